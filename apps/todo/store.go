package main

import (
	"errors"
	"slices"
	"sync"
	"time"

	"erg/apps/internal/appkit"
)

// listFile is the name of the list inside the grain's data directory.
const listFile = "todo.json"

// tempPrefix names the files a save writes before renaming them over
// listFile; any left over were abandoned by a crash mid-save.
const tempPrefix = appkit.TempPrefix

var (
	// errNotFound is returned for an item id that is not on the list.
	errNotFound = errors.New("no such item")
	// errUnknownPerson is returned when an item is assigned to someone
	// who has never visited the list.
	errUnknownPerson = errors.New("can only assign to someone who has visited this list")
	// errFull is returned when the list already holds maxItems items.
	errFull = errors.New("the list is full")
)

// maxItems bounds the size of one list.
const maxItems = 5000

// An item is one entry on the list, as stored and as sent to clients.
type item struct {
	ID        int64     `json:"id"`
	Text      string    `json:"text"`
	Done      bool      `json:"done"`
	Assignee  string    `json:"assignee"` // a username, or "" for nobody
	CreatedBy string    `json:"createdBy"`
	CreatedAt time.Time `json:"createdAt"`
	UpdatedAt time.Time `json:"updatedAt"`
}

// A change edits an item; nil fields are left as they are.
type change struct {
	Text     *string `json:"text"`
	Done     *bool   `json:"done"`
	Assignee *string `json:"assignee"`
}

// list is the file's content.
type list struct {
	NextID int64    `json:"nextId"`
	Items  []item   `json:"items"`
	People []string `json:"people"` // every named visitor, sorted
}

// A store keeps the list in memory and in a file that is replaced atomically
// on every save, so that after a crash the file holds the last saved list.
type store struct {
	dir string

	mu   sync.Mutex // held across the write, so saves are serialized
	list list
}

// openStore loads the list from dir, or starts an empty one if there is none
// yet. It removes temporary files left by a save that was interrupted.
func openStore(dir string) (*store, error) {
	s := &store{dir: dir, list: list{NextID: 1}}
	if err := appkit.LoadJSON(dir, listFile, &s.list); err != nil {
		return nil, err
	}
	return s, nil
}

// items returns the items, oldest first; if assignee is not nil, only those
// assigned to *assignee.
func (s *store) items(assignee *string) []item {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []item{}
	for _, it := range s.list.Items {
		if assignee == nil || it.Assignee == *assignee {
			out = append(out, it)
		}
	}
	return out
}

// people returns the usernames of everyone who has visited, sorted.
func (s *store) people() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.list.People)
}

// visit remembers username as someone who has seen the list.
func (s *store) visit(username string) error {
	if username == "" {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	i, found := slices.BinarySearch(s.list.People, username)
	if found {
		return nil
	}
	l := s.list
	l.People = slices.Insert(slices.Clone(l.People), i, username)
	return s.save(l)
}

// add appends a new item by user.
func (s *store) add(text, assignee, user string) (item, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.list.Items) >= maxItems {
		return item{}, errFull
	}
	if !s.known(assignee) {
		return item{}, errUnknownPerson
	}
	now := time.Now().UTC().Truncate(time.Millisecond)
	it := item{ID: s.list.NextID, Text: text, Assignee: assignee, CreatedBy: user, CreatedAt: now, UpdatedAt: now}
	l := s.list
	l.NextID++
	l.Items = append(slices.Clone(l.Items), it)
	return it, s.save(l)
}

// update applies c to the item with the given id.
func (s *store) update(id int64, c change) (item, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := s.index(id)
	if i < 0 {
		return item{}, errNotFound
	}
	if c.Assignee != nil && !s.known(*c.Assignee) {
		return item{}, errUnknownPerson
	}
	it := s.list.Items[i]
	if c.Text != nil {
		it.Text = *c.Text
	}
	if c.Done != nil {
		it.Done = *c.Done
	}
	if c.Assignee != nil {
		it.Assignee = *c.Assignee
	}
	it.UpdatedAt = time.Now().UTC().Truncate(time.Millisecond)
	l := s.list
	l.Items = slices.Clone(l.Items)
	l.Items[i] = it
	return it, s.save(l)
}

// remove deletes the item with the given id.
func (s *store) remove(id int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := s.index(id)
	if i < 0 {
		return errNotFound
	}
	l := s.list
	l.Items = slices.Delete(slices.Clone(l.Items), i, i+1)
	return s.save(l)
}

func (s *store) index(id int64) int {
	return slices.IndexFunc(s.list.Items, func(it item) bool { return it.ID == id })
}

// known reports whether an item may be assigned to username: nobody ("") or
// someone who has visited.
func (s *store) known(username string) bool {
	_, found := slices.BinarySearch(s.list.People, username)
	return username == "" || found
}

// save replaces the list file with l atomically, then makes l current.
// The caller holds s.mu.
func (s *store) save(l list) error {
	if err := appkit.SaveJSON(s.dir, listFile, l); err != nil {
		return err
	}
	s.list = l
	return nil
}
