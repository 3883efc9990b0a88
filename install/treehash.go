package install

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"syscall"
	"time"
)

// hashTree hashes names, modes and contents, so a rebuilt app with any
// change lands in a new directory and running grains keep the old one.
//
// Reading every byte of a tree at every start of a node (the apps dir is
// installed again each time) is most of what a start costs, so the hash
// is remembered for the process beside a stamp of the tree's metadata:
// every entry's name, mode, size, inode, and modification and change
// times. Writing a file changes its change time, which no program can
// set, so a tree whose stamp is unchanged has unchanged contents; a tree
// with an entry changed in the last few seconds is not remembered, since
// a write within the same clock tick as the stamp would leave its times
// as they were (git's "racily clean" index entries).
func hashTree(root string) (string, error) {
	entries, err := walkTree(root)
	if err != nil {
		return "", err
	}
	stamp, racy := stampTree(entries)
	if h, ok := treeHashes.Load(root); ok && h.(stampedHash).stamp == stamp {
		return h.(stampedHash).sum, nil
	}
	h := sha256.New()
	for _, e := range entries {
		fmt.Fprintf(h, "%s\x00%o\x00", e.rel, e.fi.Mode())
		switch {
		case e.fi.Mode().IsRegular():
			f, err := os.Open(e.path)
			if err != nil {
				return "", err
			}
			_, err = io.Copy(h, f)
			f.Close()
			if err != nil {
				return "", err
			}
		case e.fi.Mode()&fs.ModeSymlink != 0:
			t, err := os.Readlink(e.path)
			if err != nil {
				return "", err
			}
			io.WriteString(h, t)
		}
	}
	sum := hex.EncodeToString(h.Sum(nil))
	if racy {
		treeHashes.Delete(root)
	} else {
		treeHashes.Store(root, stampedHash{stamp, sum})
	}
	return sum, nil
}

// treeHashes holds a stampedHash for each root hashTree hashed.
var treeHashes sync.Map

type stampedHash struct{ stamp, sum string }

type treeEntry struct {
	path, rel string
	fi        fs.FileInfo
}

// walkTree lists root and everything below it, sorted by path, each with
// its Lstat.
func walkTree(root string) ([]treeEntry, error) {
	var paths []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		paths = append(paths, p)
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.Strings(paths)
	entries := make([]treeEntry, len(paths))
	for i, p := range paths {
		fi, err := os.Lstat(p)
		if err != nil {
			return nil, err
		}
		rel, _ := filepath.Rel(root, p)
		entries[i] = treeEntry{p, rel, fi}
	}
	return entries, nil
}

// racyWindow is how recent a change makes a stamp not worth remembering:
// well above any file system's timestamp granularity (a variable for
// the tests).
var racyWindow = 3 * time.Second

// stampTree digests the entries' metadata, and says whether one of them
// changed too recently for the stamp to prove its contents.
func stampTree(entries []treeEntry) (stamp string, racy bool) {
	h := sha256.New()
	recent := time.Now().Add(-racyWindow).UnixNano()
	for _, e := range entries {
		st, ok := e.fi.Sys().(*syscall.Stat_t)
		if !ok {
			return "", true
		}
		ctime := st.Ctim.Nano()
		fmt.Fprintf(h, "%s\x00%o %d %d %d %d %d\x00", e.rel, e.fi.Mode(), e.fi.Size(), st.Dev, st.Ino, st.Mtim.Nano(), ctime)
		racy = racy || ctime >= recent || st.Mtim.Nano() >= recent
	}
	return hex.EncodeToString(h.Sum(nil)), racy
}
