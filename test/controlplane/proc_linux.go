package controlplane

import (
	"os"
	"syscall"
)

// sysProcAttr puts a component in its own process group (so a terminal's
// Ctrl-C reaches only the parent, which stops the control plane), kills it
// if the parent dies, and, if cgroup is non-nil, starts it inside that
// cgroup v2 directory.
func sysProcAttr(cgroup *os.File) (*syscall.SysProcAttr, error) {
	attr := &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if cgroup != nil {
		attr.UseCgroupFD = true
		attr.CgroupFD = int(cgroup.Fd())
	}
	return attr, nil
}
