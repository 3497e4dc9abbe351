package harness

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/weftmesh/weft/test/harness/podshim"
)

// process is one program the harness started through the pod shim.
type process struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has been reaped
	err  error         // exit status, valid after done
}

// startProcess starts spec through the shim at shimPath, in a new mount and UTS namespace, inside
// the cgroup at cgroupDir, with stdout and stderr appended to logPath. specPath is where the spec
// is written for the shim.
func startProcess(shimPath string, spec podshim.Spec, specPath, cgroupDir, logPath string) (*process, error) {
	b, err := json.Marshal(spec)
	if err != nil {
		return nil, fmt.Errorf("process: %w", err)
	}
	if err := os.WriteFile(specPath, b, 0o600); err != nil {
		return nil, fmt.Errorf("process: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(logPath), 0o755); err != nil {
		return nil, fmt.Errorf("process: %w", err)
	}
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, fmt.Errorf("process: %w", err)
	}
	defer logf.Close()
	cg, err := os.Open(cgroupDir)
	if err != nil {
		return nil, fmt.Errorf("process: cgroup: %w", err)
	}
	defer cg.Close()
	cmd := exec.Command(shimPath, specPath)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Unshareflags: unix.CLONE_NEWUTS, // the shim makes its own mount namespace
		UseCgroupFD:  true,
		CgroupFD:     int(cg.Fd()),
		Setpgid:      true,
		Pdeathsig:    syscall.SIGKILL, // a crashed harness takes its pods along; Clean removes the rest
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("process: start %s: %w", spec.Argv[0], err)
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// signal sends sig to the process group.
func (p *process) signal(sig syscall.Signal) {
	_ = syscall.Kill(-p.cmd.Process.Pid, sig)
}

// exitCode is the exit code once done (-1 when killed by a signal).
func (p *process) exitCode() int {
	if p.cmd.ProcessState == nil {
		return -1
	}
	return p.cmd.ProcessState.ExitCode()
}
