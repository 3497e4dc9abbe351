package datapath

// The objects are committed; `make generate-check` rebuilds them and fails on any difference.
// -no-global-types: the Go mirrors of the shared C types live in layout.go (TestLayout checks them).
//go:generate go tool bpf2go -tags linux -target bpfel -cc clang -no-global-types -cflags "-O2 -g -Wall -Werror -I/usr/include/x86_64-linux-gnu -I../../bpf/include" connect ../../bpf/connect.c
//go:generate go tool bpf2go -tags linux -target bpfel -cc clang -no-global-types -cflags "-O2 -g -Wall -Werror -I/usr/include/x86_64-linux-gnu -I../../bpf/include" inbound ../../bpf/inbound.c
