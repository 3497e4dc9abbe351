// Command weft-harness runs harness clusters (see package test/harness) from the command line.
//
//	weft-harness demo [-keep] [-nodes N]   the demo: cluster + sample app + traffic report (make demo)
//	weft-harness up [-nodes N]             a cluster that stays up until SIGINT/SIGTERM
//	weft-harness down                      stop the clusters kept up by -keep / -detach
//	weft-harness clean [-all]              remove what crashed runs left (make clean-harness);
//	                                       -all also ends live runs, tests included
//
// With -keep, demo (and up -detach) leave the cluster running in the background, print its
// kubeconfig and return; `weft-harness down` (make demo-down) ends it.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/weftmesh/weft/test/demo"
	"github.com/weftmesh/weft/test/harness"
)

// readyLine is printed by a detached child once its cluster is up; the parent returns then.
const readyLine = "WEFT-HARNESS-READY"

// detachedEnv marks the background child of -keep / -detach.
const detachedEnv = "WEFT_HARNESS_DETACHED"

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch cmd, args := os.Args[1], os.Args[2:]; cmd {
	case "demo":
		err = runDemo(args)
	case "up":
		err = runUp(args)
	case "down":
		err = runDown()
	case "clean":
		err = runClean(args)
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "weft-harness:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: weft-harness demo [-keep] [-nodes N] | up [-detach] [-nodes N] | down | clean [-all]")
	os.Exit(2)
}

func runDemo(args []string) error {
	fs := flag.NewFlagSet("demo", flag.ExitOnError)
	keep := fs.Bool("keep", false, "keep the cluster running in the background after the report")
	nodes := fs.Int("nodes", 2, "number of nodes")
	fs.Parse(args)
	if *keep && os.Getenv(detachedEnv) == "" {
		return detach()
	}
	return withCluster(*nodes, *keep, func(ctx context.Context, c *harness.Cluster, p *harness.Progress) error {
		res, err := demo.Run(ctx, c, p, os.Stdout)
		if err != nil {
			return err
		}
		if res.Failed() {
			return errors.New("demo: some requests failed (see the report above)")
		}
		return nil
	})
}

func runUp(args []string) error {
	fs := flag.NewFlagSet("up", flag.ExitOnError)
	detached := fs.Bool("detach", false, "run in the background and return once the cluster is up")
	nodes := fs.Int("nodes", 2, "number of nodes")
	fs.Parse(args)
	if *detached && os.Getenv(detachedEnv) == "" {
		return detach()
	}
	return withCluster(*nodes, true, func(context.Context, *harness.Cluster, *harness.Progress) error { return nil })
}

// withCluster starts a cluster, runs fn, and closes the cluster — or, with stay, prints how to
// use it and waits for SIGINT/SIGTERM first.
func withCluster(nodes int, stay bool, fn func(context.Context, *harness.Cluster, *harness.Progress) error) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	progress := harness.NewProgress(os.Stdout)
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	c, err := harness.Start(ctx, harness.Options{Nodes: nodes, Progress: progress, Logger: log})
	if err != nil {
		return err
	}
	defer func() {
		progress.Step("tearing down cluster %s", c.RunID)
		if err := c.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "weft-harness: cleanup:", err)
		}
		progress.Step("cluster %s removed", c.RunID)
	}()
	if err := fn(ctx, c, progress); err != nil {
		return err
	}
	if !stay {
		return nil
	}
	if os.Getenv(detachedEnv) != "" {
		if err := harness.MarkDetached(c.Dir); err != nil {
			return err
		}
	}
	fmt.Printf("\nCluster %s is up. Use it with:\n\n  export KUBECONFIG=%s\n  %s get nodes,pods -A -o wide\n\nStop it with: make demo-down (or weft-harness down)\n%s\n",
		c.RunID, c.Kubeconfig, c.Tools.Kubectl, readyLine)
	<-ctx.Done()
	return nil
}

// detach re-runs this command in a new session in the background, shows its output until the
// cluster is up (or the child fails), and returns.
func detach() error {
	logPath := "/run/weft-harness/.detached.log"
	if err := os.MkdirAll("/run/weft-harness", 0o755); err != nil {
		return err
	}
	logf, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(os.Args[0], os.Args[1:]...)
	cmd.Env = append(os.Environ(), detachedEnv+"=1")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	r, err := os.Open(logPath)
	if err != nil {
		return err
	}
	defer r.Close()
	br := bufio.NewReader(r)
	var line string // a line being read; the child may not have finished writing it
	for {
		chunk, err := br.ReadString('\n')
		line += chunk
		if strings.HasSuffix(line, "\n") {
			if strings.TrimSpace(line) == readyLine {
				fmt.Printf("(running in the background as pid %d; log: %s)\n", cmd.Process.Pid, logPath)
				return nil
			}
			fmt.Print(line)
			line = ""
			continue
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		select {
		case err := <-exited:
			rest, _ := io.ReadAll(br)
			fmt.Print(line + string(rest))
			if err == nil {
				err = errors.New("background cluster exited")
			}
			return err
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// runDown stops the clusters started with -keep or -detach (SIGTERM to their owners, bounded
// wait; each owner removes its own cluster) and then removes what dead runs left. Clusters of
// running tests are not touched.
func runDown() error {
	owners := harness.DetachedOwners()
	for _, pid := range owners {
		_ = syscall.Kill(pid, syscall.SIGTERM)
	}
	deadline := time.Now().Add(60 * time.Second)
	for _, pid := range owners {
		for syscall.Kill(pid, 0) == nil && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
		}
	}
	removed, err := harness.Clean("", false)
	for _, r := range removed {
		fmt.Println("removed", r)
	}
	fmt.Printf("stopped %d background harness cluster(s)\n", len(owners))
	return err
}

func runClean(args []string) error {
	fs := flag.NewFlagSet("clean", flag.ExitOnError)
	all := fs.Bool("all", false, "also remove runs whose owner process is still alive")
	fs.Parse(args)
	removed, err := harness.Clean("", *all)
	for _, r := range removed {
		fmt.Println("removed", r)
	}
	if len(removed) == 0 && err == nil {
		fmt.Println("nothing to clean")
	}
	return err
}
