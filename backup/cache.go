package backup

import (
	"encoding/json"
	"os"
	"path/filepath"
)

// fileCache remembers, per source, each file's size, mtime and inode with
// the chunks it was cut into, so a run reads only files that changed.
// Losing it costs a full read, never correctness: a file is reused only
// when every destination still holds all its chunks.
type fileCache struct {
	path  string
	Files map[string]map[string]cachedFile `json:"files"`
}

type cachedFile struct {
	Size   int64    `json:"s"`
	MTime  int64    `json:"m"`
	Ino    uint64   `json:"i"`
	Chunks []string `json:"c"`
}

func loadCache(path string) *fileCache {
	c := &fileCache{path: path}
	if b, err := os.ReadFile(path); err == nil {
		json.Unmarshal(b, c)
	}
	if c.Files == nil {
		c.Files = map[string]map[string]cachedFile{}
	}
	return c
}

func (c *fileCache) save() error {
	if c.path == "" {
		return nil
	}
	b, err := json.Marshal(c)
	if err != nil {
		return err
	}
	tmp := c.path + ".tmp"
	if err := os.MkdirAll(filepath.Dir(c.path), 0o700); err != nil {
		return err
	}
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, c.path)
}
