// Command weft-cni is Weft's chained CNI plugin; see package nodeagent/cni.
package main

import (
	"github.com/containernetworking/cni/pkg/skel"

	"github.com/weftmesh/weft/nodeagent/cni"
)

func main() {
	skel.PluginMainFuncs(cni.Funcs(), cni.Versions, cni.About)
}
