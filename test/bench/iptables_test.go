package bench

import (
	"slices"
	"testing"
)

func TestSetCaptureArgs(t *testing.T) {
	base := []string{"--node=$(NODE_NAME)", "--controller=c:15012"}
	tests := []struct {
		name string
		args []string
		mode string
		want []string
	}{
		{"add iptables", base, CaptureIPTables, append(slices.Clone(base), "--capture=iptables")},
		{"already iptables", append(slices.Clone(base), "--capture=iptables"), CaptureIPTables, append(slices.Clone(base), "--capture=iptables")},
		{"back to ebpf", append(slices.Clone(base), "--capture=iptables"), CaptureEBPF, base},
		{"single dash replaced", append(slices.Clone(base), "-capture=ebpf"), CaptureIPTables, append(slices.Clone(base), "--capture=iptables")},
		{"ebpf stays default", base, CaptureEBPF, base},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := SetCaptureArgs(tt.args, tt.mode)
			if !slices.Equal(got, tt.want) {
				t.Errorf("SetCaptureArgs(%q, %s) = %q, want %q", tt.args, tt.mode, got, tt.want)
			}
		})
	}
}
