package harness

import (
	"fmt"
	"path/filepath"
	"strings"
)

// Images maps container images to local binaries, because harness pods are processes, not
// containers. An image is matched by the last element of its repository path, ignoring registry
// and tag: "ghcr.io/weftmesh/echo:v2" and "echo" both run the echo binary. The binary decides what
// runs; a container's command[1:] and args become its arguments.
//
//	image          binary                              what it is
//	echo           bin/echo                            HTTP echo server (test/apps/echo), stands in for gw, books, ratings, …
//	client         bin/client                          HTTP/gRPC/TCP client (test/apps/client)
//	bulk           bin/bulk                            TCP bulk sender/receiver (test/apps/bulk)
//	coredns        .cache/tools/…/coredns              cluster DNS
//	fortio         .cache/tools/…/fortio               load generator
//	weft-*         bin/weft-*                          Weft's own components
type Images map[string]string

// defaultImages returns the table for a repository whose binaries are in binDir.
func defaultImages(binDir, coredns, fortio string) Images {
	im := Images{
		"coredns": coredns,
		"fortio":  fortio,
	}
	for _, name := range []string{"echo", "client", "bulk", "weft-controller", "weft-nodeagent", "weft-waypoint", "weftctl"} {
		im[name] = filepath.Join(binDir, name)
	}
	return im
}

// Resolve returns the binary for image.
func (im Images) Resolve(image string) (string, error) {
	name := imageName(image)
	if bin, ok := im[name]; ok && bin != "" {
		return bin, nil
	}
	return "", fmt.Errorf("image %q (%q) is not in the harness image table; add it to Options.Images", image, name)
}

// imageName strips registry, path, tag and digest: "reg:5000/a/echo:v1@sha256:…" → "echo".
func imageName(image string) string {
	if i := strings.Index(image, "@"); i >= 0 {
		image = image[:i]
	}
	if i := strings.LastIndex(image, "/"); i >= 0 {
		image = image[i+1:]
	}
	if i := strings.Index(image, ":"); i >= 0 {
		image = image[:i]
	}
	return image
}
