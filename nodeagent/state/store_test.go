package state

import (
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestStore(t *testing.T) {
	var st Store
	if st.Applied() {
		t.Error("a new store says applied")
	}
	if s := st.Load(); s == nil || s.Version() != "" || len(s.Workloads()) != 0 {
		t.Fatalf("Load() before Replace = %+v", s)
	}

	changed := st.Changed()
	if st.Changed() != changed {
		t.Error("Changed returned two channels before a Replace")
	}
	good := mustSnapshot(t)
	if err := st.Replace(good); err != nil {
		t.Fatal(err)
	}
	select {
	case <-changed:
	default:
		t.Fatal("Changed channel not closed by Replace")
	}
	if st.Load() != good || !st.Applied() {
		t.Fatal("Replace did not put the snapshot in force")
	}

	// An invalid snapshot is refused and the good one stays.
	changed = st.Changed()
	ws, ss := fixture()
	ws[0].UID = ""
	err := st.Replace(NewSnapshot("v2", ws, ss))
	want := `state: snapshot "v2" is invalid: workloads[0].uid: missing; set a unique id`
	if err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("Replace(invalid) = %v, want prefix %q", err, want)
	}
	if err := st.Replace(nil); err == nil {
		t.Error("Replace(nil) succeeded")
	}
	if st.Load() != good {
		t.Error("a refused snapshot replaced the good one")
	}
	select {
	case <-changed:
		t.Error("Changed closed by a refused Replace")
	default:
	}
}

// TestStoreConcurrent runs readers against a writer; run it with -race.
func TestStoreConcurrent(t *testing.T) {
	var st Store
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				s := st.Load()
				if w, ok := s.WorkloadByIP(netip.MustParseAddr("10.0.1.1")); ok && w.Identity().IsZero() {
					t.Error("workload without identity")
					return
				}
				if svc, ok := s.ServiceByAddr(netip.MustParseAddrPort("10.96.0.10:80")); ok {
					s.PickEndpoint(svc, 80, func(n int) int { return n - 1 })
				}
			}
		})
	}
	wg.Go(func() {
		for {
			ch := st.Changed()
			st.Load()
			select {
			case <-ch:
			case <-stop:
				return
			}
		}
	})
	ws, ss := fixture()
	for i := range 200 {
		// Sharing the input structs between snapshots is fine: NewSnapshot copies them.
		if err := st.Replace(NewSnapshot(strconv.Itoa(i), ws, ss)); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(10 * time.Millisecond)
	close(stop)
	wg.Wait()
	if got := st.Load().Version(); got != "199" {
		t.Errorf("version = %s", got)
	}
}
