package cni

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Install copies the plugin binary at bin into binDir and appends the plugin, with the given
// settings, to the first conflist of confDir (the one the container runtime uses), unless it is
// already there. Both files are replaced atomically. It is idempotent.
func Install(bin, binDir, confDir string, settings map[string]any) error {
	if err := copyAtomic(bin, filepath.Join(binDir, PluginType), 0o755); err != nil {
		return fmt.Errorf("cni install: %w", err)
	}
	path, err := firstConfList(confDir)
	if err != nil {
		return fmt.Errorf("cni install: %w", err)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("cni install: %w", err)
	}
	var list map[string]any
	if err := json.Unmarshal(raw, &list); err != nil {
		return fmt.Errorf("cni install: %s: %w", path, err)
	}
	plugins, _ := list["plugins"].([]any)
	for _, p := range plugins {
		if m, ok := p.(map[string]any); ok && m["type"] == PluginType {
			return nil // already chained
		}
	}
	entry := map[string]any{"type": PluginType}
	for k, v := range settings {
		entry[k] = v
	}
	list["plugins"] = append(plugins, entry)
	out, err := json.MarshalIndent(list, "", "  ")
	if err != nil {
		return fmt.Errorf("cni install: %w", err)
	}
	return writeAtomic(path, out, 0o644)
}

// firstConfList returns the conflist a container runtime would use: the first by name.
func firstConfList(dir string) (string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return "", err
	}
	var names []string
	for _, e := range entries {
		if !e.IsDir() && strings.HasSuffix(e.Name(), ".conflist") {
			names = append(names, e.Name())
		}
	}
	if len(names) == 0 {
		return "", fmt.Errorf("no .conflist in %s: the primary CNI is not installed yet", dir)
	}
	sort.Strings(names)
	return filepath.Join(dir, names[0]), nil
}

func copyAtomic(src, dst string, mode os.FileMode) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	return writeAtomic(dst, data, mode)
}

func writeAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+"-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
