package main

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"erg/apps/internal/appkit"
)

// noteFile is the name of the note inside the grain's data directory.
const noteFile = "note.json"

// tempPrefix names the files a save writes before renaming them over
// noteFile; any left over were abandoned by a crash mid-save.
const tempPrefix = appkit.TempPrefix

// errStale is returned by store.update when the edit was based on a version
// of the note that is no longer the current one.
var errStale = errors.New("the note was changed since the version this edit is based on")

// A note is the grain's one document, as stored and as sent to clients.
type note struct {
	Title     string    `json:"title"`
	Text      string    `json:"text"`
	Version   int64     `json:"version"` // 0 until the first save, then +1 per save
	UpdatedBy string    `json:"updatedBy"`
	UpdatedAt time.Time `json:"updatedAt"`
}

// An edit replaces the note's title and text, provided nobody has saved
// since baseVersion.
type edit struct {
	Title       string `json:"title"`
	Text        string `json:"text"`
	BaseVersion int64  `json:"baseVersion"`
}

// A store keeps the note in memory and in a file that is replaced atomically
// on every save, so that after a crash the file holds the last saved version.
type store struct {
	dir string

	mu   sync.Mutex // held across the write, so saves are serialized
	note note
}

// openStore loads the note from dir, or starts an empty one if there is none
// yet. It removes temporary files left by a save that was interrupted.
func openStore(dir string) (*store, error) {
	s := &store{dir: dir}
	if err := appkit.LoadJSON(dir, noteFile, &s.note); err != nil {
		return nil, err
	}
	return s, nil
}

// get returns the current note.
func (s *store) get() note {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.note
}

// update saves e as the next version of the note, edited by user. If e is
// based on an older version it returns the current note and errStale.
func (s *store) update(e edit, user string) (note, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e.BaseVersion != s.note.Version {
		return s.note, errStale
	}
	n := note{
		Title:     e.Title,
		Text:      e.Text,
		Version:   s.note.Version + 1,
		UpdatedBy: user,
		UpdatedAt: time.Now().UTC().Truncate(time.Millisecond),
	}
	if err := s.write(n); err != nil {
		return s.note, fmt.Errorf("save note: %w", err)
	}
	s.note = n
	return n, nil
}

// write replaces the note file with n atomically.
func (s *store) write(n note) error { return appkit.SaveJSON(s.dir, noteFile, n) }
