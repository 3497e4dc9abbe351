package controlplane

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Versions of the tools that [Ensure] builds.
const (
	// KubernetesVersion is the Kubernetes release whose binaries are built;
	// it matches the project's client-go (v0.35.x).
	KubernetesVersion = "v1.35.4"
	// CoreDNSVersion is the CoreDNS release that is built.
	CoreDNSVersion = "v1.15.0"
	// FortioVersion is the fortio load generator release that is built: the newest whose
	// dependencies the module proxy serves (from v1.69.0 on, fortio requires grol.io/grol,
	// which it refuses with 403).
	FortioVersion = "v1.68.0"
)

const (
	coreDNSModule = "github.com/coredns/coredns"
	fortioModule  = "fortio.org/fortio"

	// markerName is written into a component's directory after a fully
	// successful build; its content identifies the build recipe.
	markerName = ".complete"
	// recipeRevision is bumped whenever the build recipe changes in a way
	// that must invalidate cached binaries.
	recipeRevision = "1"
)

// kubePackages are the Kubernetes main packages, in the order of their
// binaries in progress output.
var kubePackages = []string{
	"k8s.io/kubernetes/cmd/kube-apiserver",
	"k8s.io/kubernetes/cmd/kube-controller-manager",
	"k8s.io/kubernetes/cmd/kube-scheduler",
	"k8s.io/kubernetes/cmd/kube-proxy",
	"k8s.io/kubernetes/cmd/kubectl",
}

// Binaries holds absolute paths of the built tools.
type Binaries struct {
	KubeAPIServer, KubeControllerManager, KubeScheduler, KubeProxy, Kubectl, Etcd, CoreDNS, Fortio string
}

// DefaultCacheDir returns the tool cache directory: $WEFT_TOOLS_CACHE if set,
// otherwise <repo root>/.cache/tools, where the repository root is the
// nearest directory above the working directory whose go.mod declares
// module github.com/weftmesh/weft.
func DefaultCacheDir() (string, error) {
	if dir := os.Getenv("WEFT_TOOLS_CACHE"); dir != "" {
		abs, err := filepath.Abs(dir)
		if err != nil {
			return "", fmt.Errorf("tools cache: %w", err)
		}
		return abs, nil
	}
	root, err := RepoRoot()
	if err != nil {
		return "", fmt.Errorf("tools cache: %w", err)
	}
	return filepath.Join(root, ".cache", "tools"), nil
}

// RepoRoot returns the root of the Weft repository that contains the working directory.
func RepoRoot() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	return findRepoRoot(wd)
}

// findRepoRoot walks up from dir to the directory whose go.mod declares the
// weft module.
func findRepoRoot(dir string) (string, error) {
	for d := dir; ; {
		data, err := os.ReadFile(filepath.Join(d, "go.mod"))
		if err == nil {
			if m, perr := parseModulePath(data); perr == nil && m == "github.com/weftmesh/weft" {
				return d, nil
			}
		}
		parent := filepath.Dir(d)
		if parent == d {
			return "", fmt.Errorf("no go.mod of github.com/weftmesh/weft above %s", dir)
		}
		d = parent
	}
}

// parseModulePath returns the module path declared in a go.mod file.
func parseModulePath(data []byte) (string, error) {
	for line := range strings.Lines(string(data)) {
		fields := strings.Fields(line)
		if len(fields) >= 2 && fields[0] == "module" {
			return strings.Trim(fields[1], `"`), nil
		}
	}
	return "", errors.New("no module directive")
}

// component is one cached group of binaries built by a single recipe.
type component struct {
	name   string   // for progress lines, e.g. "kubernetes v1.35.4"
	detail string   // what is built, for the progress line
	dir    string   // cache directory of the component
	bins   []string // binary names under dir/bin
	stamp  string   // content of the marker file
	build  func(ctx context.Context, b *builder, c *component) error
}

func (c *component) binDir() string { return filepath.Join(c.dir, "bin") }

func (c *component) bin(name string) string { return filepath.Join(c.binDir(), name) }

// cached reports whether the marker matches the recipe and every binary is
// present.
func (c *component) cached() bool {
	stamp, err := os.ReadFile(filepath.Join(c.dir, markerName))
	if err != nil || string(stamp) != c.stamp {
		return false
	}
	for _, name := range c.bins {
		fi, err := os.Stat(c.bin(name))
		if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
			return false
		}
	}
	return true
}

// builder runs the build steps of [Ensure].
type builder struct {
	progress io.Writer
	start    time.Time
	env      []string
}

func (b *builder) logf(format string, args ...any) {
	fmt.Fprintf(b.progress, "[%5.1fs] %s\n", time.Since(b.start).Seconds(), fmt.Sprintf(format, args...))
}

// Ensure builds whatever is missing under cacheDir and returns absolute paths
// of all binaries. It writes one progress line per step to progress (which
// may be nil). A call that finds everything cached does no building and
// returns quickly. Concurrent callers (also in other processes) are
// serialised with a file lock per component.
func Ensure(ctx context.Context, cacheDir string, progress io.Writer) (Binaries, error) {
	if progress == nil {
		progress = io.Discard
	}
	root, err := filepath.Abs(cacheDir)
	if err != nil {
		return Binaries{}, fmt.Errorf("ensure tools: %w", err)
	}
	b := &builder{
		progress: progress,
		start:    time.Now(),
		// The build modules live below the project tree: never let a
		// workspace or the project's module take part.
		env: append(os.Environ(), "GOWORK=off", "GOTOOLCHAIN=local"),
	}
	kube, coredns, fortio := newComponents(root)
	for _, c := range []*component{kube, coredns, fortio} {
		if err := b.ensure(ctx, c); err != nil {
			return Binaries{}, fmt.Errorf("ensure tools: %w", err)
		}
	}
	return Binaries{
		KubeAPIServer:         kube.bin("kube-apiserver"),
		KubeControllerManager: kube.bin("kube-controller-manager"),
		KubeScheduler:         kube.bin("kube-scheduler"),
		KubeProxy:             kube.bin("kube-proxy"),
		Kubectl:               kube.bin("kubectl"),
		Etcd:                  kube.bin("etcd"),
		CoreDNS:               coredns.bin("coredns"),
		Fortio:                fortio.bin("fortio"),
	}, nil
}

// newComponents describes the cached components under the cache directory
// root.
func newComponents(root string) (kube, coredns, fortio *component) {
	kube = &component{
		name: "kubernetes " + KubernetesVersion,
		dir:  filepath.Join(root, "k8s-"+KubernetesVersion),
		bins: []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy", "kubectl", "etcd"},
		stamp: fmt.Sprintf("kubernetes %s %s recipe %s\n",
			KubernetesVersion, strings.Join(kubePackages, " "), recipeRevision),
		build: buildKubernetes,
	}
	kube.detail = strings.Join(kube.bins, ", ")
	coredns = goInstallComponent(root, "coredns", coreDNSModule, CoreDNSVersion)
	fortio = goInstallComponent(root, "fortio", fortioModule, FortioVersion)
	return kube, coredns, fortio
}

// goInstallComponent describes a tool installed with
// "GOBIN=<dir>/bin go install module@version"; the module's root package is
// the command.
func goInstallComponent(root, name, module, version string) *component {
	return &component{
		name:   name + " " + version,
		detail: module + "@" + version,
		dir:    filepath.Join(root, name+"-"+version),
		bins:   []string{name},
		stamp:  fmt.Sprintf("go install %s@%s recipe %s\n", module, version, recipeRevision),
		build: func(ctx context.Context, b *builder, c *component) error {
			if path.Base(module) != name {
				return fmt.Errorf("binary of %s is not named %s", module, name)
			}
			return b.goCmd(ctx, c, c.dir, []string{"GOBIN=" + c.binDir()},
				"install", "-trimpath", "-ldflags=-s -w", module+"@"+version)
		},
	}
}

// ensure builds c unless it is cached.
func (b *builder) ensure(ctx context.Context, c *component) error {
	if c.cached() {
		b.logf("%s binaries cached", c.name)
		return nil
	}
	if err := os.MkdirAll(c.dir, 0o755); err != nil {
		return err
	}
	unlock, err := b.lock(ctx, c)
	if err != nil {
		return err
	}
	defer unlock()
	if c.cached() { // built by another process while we waited
		b.logf("%s binaries cached", c.name)
		return nil
	}
	if err := os.Remove(filepath.Join(c.dir, markerName)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	b.logf("building %s (%s)", c.name, c.detail)
	t0 := time.Now()
	if err := c.build(ctx, b, c); err != nil {
		return fmt.Errorf("build %s: %w", c.name, err)
	}
	for _, name := range c.bins {
		if _, err := os.Stat(c.bin(name)); err != nil {
			return fmt.Errorf("build %s: %w", c.name, err)
		}
	}
	if err := os.WriteFile(filepath.Join(c.dir, markerName), []byte(c.stamp), 0o644); err != nil {
		return err
	}
	b.logf("built %s in %s", c.name, time.Since(t0).Round(100*time.Millisecond))
	return nil
}

// lock takes an exclusive flock on the component's lock file, polling so
// that ctx can cancel the wait.
func (b *builder) lock(ctx context.Context, c *component) (unlock func(), err error) {
	f, err := os.OpenFile(filepath.Join(c.dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	waiting := false
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil // closing releases the lock
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", f.Name(), err)
		}
		if !waiting {
			b.logf("waiting for another build of %s", c.name)
			waiting = true
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// buildKubernetes writes the build module under c.dir/module and builds all
// Kubernetes binaries and etcd with one go build invocation.
func buildKubernetes(ctx context.Context, b *builder, c *component) error {
	modDir := filepath.Join(c.dir, "module")
	if err := os.MkdirAll(modDir, 0o755); err != nil {
		return err
	}
	// A minimal module to run go mod download in; replaced below.
	boot := fmt.Sprintf("module %s\n\ngo 1.25\n", buildModulePath)
	if err := os.WriteFile(filepath.Join(modDir, "go.mod"), []byte(boot), 0o644); err != nil {
		return err
	}
	kubeGoMod, err := b.downloadGoMod(ctx, c, modDir, "k8s.io/kubernetes@"+KubernetesVersion)
	if err != nil {
		return err
	}
	mod, err := renderBuildGoMod(kubeGoMod, KubernetesVersion)
	if err != nil {
		return err
	}
	pkgs := append(append([]string(nil), kubePackages...), etcdServerModule)
	if err := os.WriteFile(filepath.Join(modDir, "go.mod"), mod.goMod, 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(modDir, "tools.go"), renderToolsGo(pkgs), 0o644); err != nil {
		return err
	}
	if err := b.goCmd(ctx, c, modDir, nil, "mod", "tidy"); err != nil {
		return err
	}
	minor := strings.Split(strings.TrimPrefix(KubernetesVersion, "v"), ".")[1]
	ldflags := strings.Join([]string{
		"-s", "-w",
		"-X k8s.io/component-base/version.gitVersion=" + KubernetesVersion,
		"-X k8s.io/component-base/version.gitMajor=1",
		"-X k8s.io/component-base/version.gitMinor=" + minor,
	}, " ")
	// go build -o dir/ names each binary after its package's last path
	// element without a major-version suffix, so the etcd server
	// (go.etcd.io/etcd/server/v3) comes out as "server".
	args := append([]string{"build", "-trimpath", "-ldflags", ldflags, "-o", c.binDir() + string(filepath.Separator)}, pkgs...)
	if err := b.goCmd(ctx, c, modDir, nil, args...); err != nil {
		return err
	}
	if err := os.Rename(c.bin("server"), c.bin("etcd")); err != nil {
		return fmt.Errorf("install etcd: %w", err)
	}
	return nil
}

// downloadGoMod downloads module@version and returns its go.mod file.
func (b *builder) downloadGoMod(ctx context.Context, c *component, dir, modVersion string) ([]byte, error) {
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, "go", "mod", "download", "-json", modVersion)
	cmd.Dir = dir
	cmd.Env = b.env
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("go mod download %s: %w: %s", modVersion, err, strings.TrimSpace(out.String()))
	}
	var info struct {
		GoMod string
		Error string
	}
	if err := json.Unmarshal(out.Bytes(), &info); err != nil {
		return nil, fmt.Errorf("go mod download %s: %w", modVersion, err)
	}
	if info.Error != "" {
		return nil, fmt.Errorf("go mod download %s: %s", modVersion, info.Error)
	}
	return os.ReadFile(info.GoMod)
}

// goCmd runs the go command in dir, appending its output to c.dir/build.log.
// On failure the error carries the tail of that output.
func (b *builder) goCmd(ctx context.Context, c *component, dir string, env []string, args ...string) error {
	logPath := filepath.Join(c.dir, "build.log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	fmt.Fprintf(logf, "\n$ (cd %s && go %s)\n", dir, strings.Join(args, " "))
	var out tailBuffer
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = dir
	cmd.Env = append(append([]string(nil), b.env...), env...)
	cmd.Stdout = io.MultiWriter(logf, &out)
	cmd.Stderr = cmd.Stdout
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return fmt.Errorf("go %s: %w (log %s):\n%s", args[0], err, logPath, out.String())
	}
	return nil
}

// tailBuffer keeps the last few KiB written to it.
type tailBuffer struct{ buf []byte }

const tailSize = 4 << 10

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.buf = append(t.buf, p...)
	if len(t.buf) > 2*tailSize {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-tailSize:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	if len(t.buf) > tailSize {
		return "..." + string(t.buf[len(t.buf)-tailSize:])
	}
	return string(t.buf)
}
