package harness

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// startProbes runs c's readiness, liveness and startup probes from the node's network namespace,
// as the kubelet does (so a mesh sees them come from the node). A failed liveness or startup probe
// asks for a restart on restart.
func (w *podWorker) startProbes(ctx context.Context, c *containerState, restart chan<- string) {
	started := make(chan struct{})
	if p := c.spec.StartupProbe; p != nil {
		go w.probeLoop(ctx, c, p, func(ok bool, final bool) {
			if ok {
				close(started)
			} else if final {
				select {
				case restart <- "startup probe failed":
				default:
				}
			}
		}, true)
	} else {
		close(started)
	}
	if p := c.spec.ReadinessProbe; p != nil {
		go func() {
			select {
			case <-started:
			case <-ctx.Done():
				return
			}
			w.probeLoop(ctx, c, p, func(ok bool, _ bool) {
				w.mu.Lock()
				changed := c.ready != ok
				c.ready = ok
				w.mu.Unlock()
				if changed {
					w.notify()
				}
			}, false)
		}()
	}
	if p := c.spec.LivenessProbe; p != nil {
		go func() {
			select {
			case <-started:
			case <-ctx.Done():
				return
			}
			w.probeLoop(ctx, c, p, func(ok bool, final bool) {
				if !ok && final {
					select {
					case restart <- "liveness probe failed":
					default:
					}
				}
			}, false)
		}()
	}
}

// probeLoop probes at the probe's period and reports each result once its threshold is reached
// (ok after successThreshold successes, !ok after failureThreshold failures, final set then). A
// startup probe (once) stops after its first success.
func (w *podWorker) probeLoop(ctx context.Context, c *containerState, p *corev1.Probe, report func(ok, final bool), once bool) {
	period := seconds(p.PeriodSeconds, 10)
	timeout := seconds(p.TimeoutSeconds, 1)
	successes, failures := 0, 0
	succThreshold, failThreshold := int(max(p.SuccessThreshold, 1)), int(max(p.FailureThreshold, 1))
	if p.FailureThreshold == 0 {
		failThreshold = 3
	}
	select {
	case <-ctx.Done():
		return
	case <-time.After(time.Duration(p.InitialDelaySeconds) * time.Second):
	}
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		pctx, cancel := context.WithTimeout(ctx, timeout)
		err := w.probeOnce(pctx, c, p.ProbeHandler)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			successes, failures = successes+1, 0
			if successes >= succThreshold {
				report(true, false)
				if once {
					return
				}
			}
		} else {
			successes, failures = 0, failures+1
			w.log.Debug("probe failed", "container", c.spec.Name, "err", err)
			report(false, failures >= failThreshold)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func seconds(v, def int32) time.Duration {
	if v <= 0 {
		v = def
	}
	return time.Duration(v) * time.Second
}

// probeOnce runs one HTTP GET or TCP socket probe from the node namespace.
func (w *podWorker) probeOnce(ctx context.Context, c *containerState, h corev1.ProbeHandler) error {
	w.mu.Lock()
	ip := w.ip
	w.mu.Unlock()
	node := w.k.node
	switch {
	case h.HTTPGet != nil:
		g := h.HTTPGet
		port, err := resolvePort(g.Port, c.spec)
		if err != nil {
			return err
		}
		host := g.Host
		if host == "" {
			host = ip.String()
		}
		scheme := strings.ToLower(string(g.Scheme))
		if scheme == "" {
			scheme = "http"
		}
		path := g.Path
		if !strings.HasPrefix(path, "/") {
			path = "/" + path
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s://%s%s", scheme, net.JoinHostPort(host, strconv.Itoa(port)), path), nil)
		if err != nil {
			return err
		}
		req.Header.Set("User-Agent", "kube-probe/1.35")
		req.Header.Set("Accept", "*/*")
		for _, hd := range g.HTTPHeaders {
			req.Header.Set(hd.Name, hd.Value)
		}
		client := &http.Client{
			Transport: &http.Transport{DialContext: node.NetNS.DialContext, DisableKeepAlives: true},
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse
			},
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode < 200 || resp.StatusCode >= 400 {
			return fmt.Errorf("http probe: status %d", resp.StatusCode)
		}
		return nil
	case h.TCPSocket != nil:
		port, err := resolvePort(h.TCPSocket.Port, c.spec)
		if err != nil {
			return err
		}
		host := h.TCPSocket.Host
		if host == "" {
			host = ip.String()
		}
		conn, err := node.NetNS.DialContext(ctx, "tcp", net.JoinHostPort(host, strconv.Itoa(port)))
		if err != nil {
			return err
		}
		return conn.Close()
	default:
		return fmt.Errorf("probe: only httpGet and tcpSocket probes are supported by the harness kubelet")
	}
}

// resolvePort turns a numeric or named container port into a number.
func resolvePort(p intstr.IntOrString, c corev1.Container) (int, error) {
	if p.Type == intstr.Int {
		return p.IntValue(), nil
	}
	for _, cp := range c.Ports {
		if cp.Name == p.StrVal {
			return int(cp.ContainerPort), nil
		}
	}
	if n, err := strconv.Atoi(p.StrVal); err == nil {
		return n, nil
	}
	return 0, fmt.Errorf("probe: container %s has no port named %q", c.Name, p.StrVal)
}
