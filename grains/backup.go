package grains

import (
	"archive/zip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"erg"
	"erg/apppkg"
)

// A backup is a zip holding backupMeta as backupMetaName and the grain's
// /var under backupDataDir.
const (
	backupMetaName = "erg-backup.json"
	backupDataDir  = "data/"
	backupFormat   = 1
)

// Limits on what a restore unpacks, whatever the zip's headers claim.
const (
	defaultRestoreLimit = 4 << 30 // bytes unpacked (Service.restoreLimit)
	maxRestoreEntries   = 100_000
	maxBackupMeta       = 64 << 10
)

type backupMeta struct {
	Format     int       `json:"format"`
	AppID      string    `json:"appId"`
	AppName    string    `json:"appName"`
	AppVersion int64     `json:"appVersion"`
	Title      string    `json:"title"`
	Created    time.Time `json:"created"`
	BackedUp   time.Time `json:"backedUp"`
}

// Backup writes a zip of one of who's grains to w. A running grain is copied as it
// is, file by file; apps that write files atomically (as appkit does) get
// a consistent copy of each file.
func (s *Service) Backup(ctx context.Context, who erg.User, id string, w io.Writer) error {
	g, err := s.Own(who, id)
	if err != nil {
		return err
	}
	s.mu.RLock()
	meta := backupMeta{Format: backupFormat, AppID: g.appID, AppName: g.app.Name, AppVersion: g.app.Version,
		Title: g.title, Created: g.created, BackedUp: time.Now().UTC().Truncate(time.Second)}
	s.mu.RUnlock()
	zw := zip.NewWriter(w)
	mw, err := zw.Create(backupMetaName)
	if err != nil {
		return err
	}
	if err := json.NewEncoder(mw).Encode(meta); err != nil {
		return err
	}
	// The grain owns its /var and may have planted symlinks there: read
	// through an os.Root so nothing outside it can be reached.
	root, err := os.OpenRoot(filepath.Join(s.Dir(id), "var"))
	if err != nil {
		return fmt.Errorf("backup %s: %w", id, err)
	}
	defer root.Close()
	err = fs.WalkDir(root.FS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if p == "." {
			return nil
		}
		switch {
		case d.IsDir():
			_, err := zw.CreateHeader(&zip.FileHeader{Name: backupDataDir + p + "/", Method: zip.Store})
			return err
		case d.Type().IsRegular():
			return addBackupFile(zw, root, p)
		}
		return nil // symlinks, sockets, fifos: not data a restore could trust
	})
	if err != nil {
		return fmt.Errorf("backup %s: %w", id, err)
	}
	return zw.Close()
}

func addBackupFile(zw *zip.Writer, root *os.Root, p string) error {
	// O_NOFOLLOW and O_NONBLOCK: a file swapped for a link or a fifo since
	// the walk saw it is skipped, not followed or waited on.
	f, err := root.OpenFile(p, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		return nil
	}
	hdr, err := zip.FileInfoHeader(fi)
	if err != nil {
		return err
	}
	hdr.Name = backupDataDir + p
	hdr.Method = zip.Deflate
	fw, err := zw.CreateHeader(hdr)
	if err != nil {
		return err
	}
	_, err = io.Copy(fw, f)
	return err
}

// Restore makes a grain for who from a backup read from r. The zip is checked whole before
// anything is made: names must stay inside data/, entries must be plain
// files and dirs, and the bytes unpacked are counted, not taken from the
// headers. A failed restore leaves nothing behind.
func (s *Service) Restore(ctx context.Context, who erg.User, r io.Reader) (erg.Grain, error) {
	tmpDir := s.cfg.TempDir
	if err := os.MkdirAll(tmpDir, 0o700); err != nil {
		return erg.Grain{}, err
	}
	f, err := os.CreateTemp(tmpDir, "restore-*.zip")
	if err != nil {
		return erg.Grain{}, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	size, err := io.Copy(f, r)
	if err != nil {
		return erg.Grain{}, fmt.Errorf("receive backup: %w", err)
	}
	zr, err := zip.NewReader(f, size)
	if err != nil {
		return erg.Grain{}, fmt.Errorf("%w: not a backup zip: %v", erg.ErrInvalid, err)
	}
	meta, err := checkBackup(zr)
	if err != nil {
		return erg.Grain{}, err
	}
	m, _, err := s.findApp(ctx, meta.AppID)
	if errors.Is(err, erg.ErrNotFound) {
		return erg.Grain{}, fmt.Errorf("%w: the backup is of app %s (%s), which is not installed: install it first", erg.ErrInvalid, meta.AppName, meta.AppID)
	}
	if err != nil {
		return erg.Grain{}, err
	}
	if m.Version < meta.AppVersion {
		return erg.Grain{}, fmt.Errorf("%w: the backup needs %s version %d or newer; version %d is installed", erg.ErrInvalid, m.Name, meta.AppVersion, m.Version)
	}
	// What the zip says it unpacks to is checked before anything is made;
	// what it does unpack to is counted as it goes.
	var declared int64
	for _, zf := range zr.File {
		declared += int64(min(zf.UncompressedSize64, 1<<62))
	}
	s.mu.RLock()
	bound := s.diskBytesLocked(m, nil)
	s.mu.RUnlock()
	if err := s.checkRoom(who.ID, declared, bound); err != nil {
		return erg.Grain{}, fmt.Errorf("restore %s: %w", meta.Title, err)
	}
	g, err := s.create(ctx, who, meta.AppID, meta.Title, func(varDir string, _ *apppkg.Manifest, uid uint32) error {
		return s.unpackBackup(ctx, zr, varDir, uid, bound)
	})
	if err != nil {
		return erg.Grain{}, err
	}
	names, err := s.cfg.Usernames(ctx)
	if err != nil {
		return erg.Grain{}, err
	}
	s.log.Info("grain restored", "grain", g.id, "app", meta.AppID, "from", meta.Title)
	return s.ToAPI(g, who, "", names), nil
}

// backupPath returns the path below data/ an entry unpacks to, or an error
// if it could land anywhere else.
func backupPath(name string) (string, bool, error) {
	rel, ok := strings.CutPrefix(name, backupDataDir)
	if !ok {
		return "", false, fmt.Errorf("%w: backup entry %q is outside %s", erg.ErrInvalid, name, backupDataDir)
	}
	dir := strings.HasSuffix(rel, "/")
	rel = strings.TrimSuffix(rel, "/")
	if rel == "" && dir {
		return "", true, nil
	}
	if strings.Contains(rel, "\\") || !filepath.IsLocal(rel) || path.Clean(rel) != rel {
		return "", false, fmt.Errorf("%w: backup entry %q has an unsafe path", erg.ErrInvalid, name)
	}
	return rel, dir, nil
}

func checkBackup(zr *zip.Reader) (backupMeta, error) {
	var meta backupMeta
	if len(zr.File) > maxRestoreEntries {
		return meta, fmt.Errorf("%w: the backup has more than %d entries", erg.ErrInvalid, maxRestoreEntries)
	}
	found := false
	for _, zf := range zr.File {
		if zf.Name == backupMetaName {
			if found {
				return meta, fmt.Errorf("%w: the backup has two %s", erg.ErrInvalid, backupMetaName)
			}
			found = true
			rc, err := zf.Open()
			if err != nil {
				return meta, fmt.Errorf("%w: %s: %v", erg.ErrInvalid, backupMetaName, err)
			}
			dec := json.NewDecoder(io.LimitReader(rc, maxBackupMeta))
			err = dec.Decode(&meta)
			rc.Close()
			if err != nil {
				return meta, fmt.Errorf("%w: %s: %v", erg.ErrInvalid, backupMetaName, err)
			}
			continue
		}
		_, dir, err := backupPath(zf.Name)
		if err != nil {
			return meta, err
		}
		mode := zf.Mode()
		if dir != mode.IsDir() || !(mode.IsDir() || mode.IsRegular()) {
			return meta, fmt.Errorf("%w: backup entry %q is not a plain file or directory", erg.ErrInvalid, zf.Name)
		}
	}
	if !found {
		return meta, fmt.Errorf("%w: not an erg backup (no %s)", erg.ErrInvalid, backupMetaName)
	}
	if meta.Format != backupFormat || meta.AppID == "" {
		return meta, fmt.Errorf("%w: unknown backup format %d", erg.ErrInvalid, meta.Format)
	}
	return meta, nil
}

func (s *Service) unpackBackup(ctx context.Context, zr *zip.Reader, varDir string, grainUID uint32, bound int64) error {
	root, err := os.OpenRoot(varDir)
	if err != nil {
		return err
	}
	defer root.Close()
	// In root mode the sandbox runs as the grain's own uid, which must own
	// what it finds in /var.
	runner := s.cfg.Runner
	chown := os.Geteuid() == 0 && runner.Mode() == "root"
	uid, gid := runner.SandboxUID()
	if grainUID != 0 {
		uid, gid = grainUID, grainUID
	}
	owned := func(name string) error {
		if !chown {
			return nil
		}
		return root.Lchown(name, int(uid), int(gid))
	}
	s.mu.RLock()
	limit := min(s.restoreLimit, bound)
	s.mu.RUnlock()
	budget := limit
	for _, zf := range zr.File {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if zf.Name == backupMetaName {
			continue
		}
		rel, dir, err := backupPath(zf.Name)
		if err != nil {
			return err
		}
		if rel == "" {
			continue
		}
		if parent := path.Dir(rel); parent != "." {
			if err := root.MkdirAll(parent, 0o700); err != nil {
				return fmt.Errorf("restore %s: %w", zf.Name, err)
			}
		}
		if dir {
			if err := root.Mkdir(rel, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
				return fmt.Errorf("restore %s: %w", zf.Name, err)
			}
			if err := owned(rel); err != nil {
				return err
			}
			continue
		}
		perm := zf.Mode().Perm()&0o700 | 0o600
		out, err := root.OpenFile(rel, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
		if err != nil {
			return fmt.Errorf("%w: restore %s: %v", erg.ErrInvalid, zf.Name, err)
		}
		in, err := zf.Open()
		if err != nil {
			out.Close()
			return fmt.Errorf("%w: %s: %v", erg.ErrInvalid, zf.Name, err)
		}
		k, err := io.Copy(out, io.LimitReader(in, budget+1))
		in.Close()
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("%w: %s: %v", erg.ErrInvalid, zf.Name, err)
		}
		if budget -= k; budget < 0 {
			return fmt.Errorf("%w: the backup unpacks to more than %d MiB", erg.ErrInvalid, limit>>20)
		}
		if err := owned(rel); err != nil {
			return err
		}
	}
	// Directories were made 0700 by the node; the walk above owns them in
	// root mode, and parents made by MkdirAll are fixed up here.
	if chown {
		return fs.WalkDir(root.FS(), ".", func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			return owned(p)
		})
	}
	return nil
}
