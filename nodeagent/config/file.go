package config

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/weftmesh/weft/nodeagent/state"
)

// Bounds of FileOptions.Interval.
const (
	DefaultPollInterval = 200 * time.Millisecond
	MinPollInterval     = 10 * time.Millisecond
	MaxPollInterval     = time.Minute
)

// racyWindow: a file whose modification time is less than this before the last read is
// re-read and hashed at every check even when its size and modification time have not
// changed, because a write within the file system's timestamp granularity can leave both as
// they were (git calls such entries racily clean).
const racyWindow = 2 * time.Second

// FileOptions configures a FileSource.
type FileOptions struct {
	// Interval is how often the file is checked; zero means DefaultPollInterval. It is
	// clamped to [MinPollInterval, MaxPollInterval].
	Interval time.Duration
	// Logger receives the source's logs; nil means slog.Default().
	Logger *slog.Logger
}

// FileSource is a Source that reads a local YAML or JSON file (see the package documentation
// for its format) and watches it for changes by polling its size, modification time and
// identity, and hashing its content when they change. Each distinct content is decoded,
// validated and delivered once; a content that is invalid or that the agent rejects leaves
// the last good snapshot in force until the file changes again.
//
// Write the file atomically (write a temporary file, then rename it over the old one), as a
// Kubernetes ConfigMap volume does: a half-written file is rejected, and the next change
// recovers.
type FileSource struct {
	path     string
	interval time.Duration
	log      *slog.Logger

	mu     sync.Mutex
	status Status
}

// NewFileSource returns a source reading the file at path.
func NewFileSource(path string, opts FileOptions) *FileSource {
	interval := opts.Interval
	if interval == 0 {
		interval = DefaultPollInterval
	}
	interval = min(max(interval, MinPollInterval), MaxPollInterval)
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	return &FileSource{
		path:     path,
		interval: interval,
		log:      log.With("component", "config", "path", path),
		status:   Status{Source: "file:" + path},
	}
}

// Status returns where the source's configuration stands.
func (s *FileSource) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.status
}

// watch is the state of the polling loop.
type watch struct {
	info     os.FileInfo // of the last read, nil after a failed one
	readAt   time.Time
	hash     string // of the last content considered (applied or rejected)
	statFail string // text of the last stat or read error, to log it once
}

// Run reads the file, delivers its snapshot, and then checks the file every interval until
// ctx is done, when it returns nil. A file missing or unreadable at start is an error; an
// invalid file at start is reported in Status and the source keeps watching for a fix.
func (s *FileSource) Run(ctx context.Context, apply func(*state.Snapshot) error) error {
	var w watch
	info, data, err := s.read()
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	s.consider(&w, info, data, apply)

	t := time.NewTicker(s.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			s.poll(&w, apply)
		}
	}
}

func (s *FileSource) read() (os.FileInfo, []byte, error) {
	f, err := os.Open(s.path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, nil, err
	}
	if !info.Mode().IsRegular() {
		return nil, nil, fmt.Errorf("%s is not a regular file", s.path)
	}
	data, err := io.ReadAll(f)
	if err != nil {
		return nil, nil, fmt.Errorf("read %s: %w", s.path, err)
	}
	return info, data, nil
}

func (s *FileSource) poll(w *watch, apply func(*state.Snapshot) error) {
	info, err := os.Stat(s.path)
	if err == nil && w.info != nil && unchanged(w.info, info) && info.ModTime().Before(w.readAt.Add(-racyWindow)) {
		// Same file, size and modification time, and that time is well before the last
		// read, so a later write would have changed it.
		return
	}
	var data []byte
	if err == nil {
		info, data, err = s.read()
	}
	if err != nil {
		s.readFailed(w, err)
		return
	}
	s.consider(w, info, data, apply)
}

// unchanged reports whether the file looks the same as at the last read.
func unchanged(a, b os.FileInfo) bool {
	return os.SameFile(a, b) && a.Size() == b.Size() && a.ModTime().Equal(b.ModTime())
}

// readFailed records that the file cannot be read. The snapshot in force stays; the file is
// considered anew once it can be read again.
func (s *FileSource) readFailed(w *watch, err error) {
	w.info, w.hash = nil, ""
	err = fmt.Errorf("config: %w; the last good configuration stays in force", err)
	if msg := err.Error(); msg != w.statFail {
		w.statFail = msg
		s.log.Warn("config file unreadable", "err", err)
	}
	s.mu.Lock()
	s.status.LastError, s.status.Rejected, s.status.Failed = err, "", time.Now()
	s.mu.Unlock()
}

// consider decodes and delivers data when it differs from the last content considered.
func (s *FileSource) consider(w *watch, info os.FileInfo, data []byte, apply func(*state.Snapshot) error) {
	w.info, w.readAt, w.statFail = info, time.Now(), ""
	version := Version(data)
	if version == w.hash {
		return
	}
	w.hash = version

	snap, err := decode(data, version)
	if err != nil {
		s.reject(version, fmt.Errorf("config: %s: %w", s.path, err))
		return
	}
	if err := apply(snap); err != nil {
		s.reject(version, fmt.Errorf("config: version %s rejected by the agent: %w", version, err))
		return
	}
	s.log.Info("config applied", "version", version,
		"workloads", len(snap.Workloads()), "services", len(snap.Services()), "authorizations", len(snap.Authorizations()))
	s.mu.Lock()
	s.status.Version, s.status.Applied = version, time.Now()
	s.status.LastError, s.status.Rejected, s.status.Failed = nil, "", time.Time{}
	s.mu.Unlock()
}

func (s *FileSource) reject(version string, err error) {
	s.mu.Lock()
	inForce := s.status.Version
	s.status.LastError, s.status.Rejected, s.status.Failed = err, version, time.Now()
	s.mu.Unlock()
	if inForce == "" {
		inForce = "none"
	}
	s.log.Warn("config rejected", "version", version, "in_force", inForce, "err", err)
}

// Version returns the version of a configuration file's content: the first 16 hex digits of
// its SHA-256.
func Version(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:8])
}

// LoadFile reads, decodes and validates the configuration file at path once, for tools that
// check a file without running an agent. The snapshot's version is derived from the content,
// as FileSource derives it.
func LoadFile(path string) (*state.Snapshot, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	snap, err := decode(data, Version(data))
	if err != nil {
		return nil, fmt.Errorf("config: %s: %w", path, err)
	}
	return snap, nil
}

var _ interface {
	Source
	StatusReporter
} = (*FileSource)(nil)
