// Command weft-podshim starts one container of a harness pod: weft-podshim SPEC.json.
// See package podshim; the harness writes the spec and starts the shim.
package main

import (
	"fmt"
	"os"

	"github.com/weftmesh/weft/test/harness/podshim"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: weft-podshim SPEC.json")
		os.Exit(2)
	}
	spec, err := podshim.Load(os.Args[1])
	if err == nil {
		err = podshim.Exec(spec)
	}
	fmt.Fprintln(os.Stderr, err)
	os.Exit(1)
}
