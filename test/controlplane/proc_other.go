//go:build !linux

package controlplane

import (
	"errors"
	"os"
	"syscall"
)

// sysProcAttr supports no cgroups outside Linux.
func sysProcAttr(cgroup *os.File) (*syscall.SysProcAttr, error) {
	if cgroup != nil {
		return nil, errors.New("cgroups are supported only on linux")
	}
	return nil, nil
}
