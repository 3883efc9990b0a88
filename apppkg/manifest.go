// Package apppkg is the package format: the manifest that describes a
// package, app keys and ids, and the signed package file — packing a tree
// into it, verifying one (from a file or from a DAG of blocks), and
// unpacking it read-only. It links no networking; the store is appstore.
package apppkg

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
)

// ManifestFile is the manifest's name at the root of an app tree.
const ManifestFile = "erg.json"

// Manifest describes one version of an app: how to start it and what its
// users may do in it.
type Manifest struct {
	ID             string   `json:"id"`
	Name           string   `json:"name"`
	Version        int64    `json:"version"`
	DisplayVersion string   `json:"displayVersion"`
	Description    string   `json:"description,omitempty"`
	Command        []string `json:"command"`
	Env            []string `json:"env,omitempty"`
	Port           int      `json:"port"`
	Roles          []Role   `json:"roles"`
	OwnerRole      string   `json:"ownerRole"`
	Actions        []Action `json:"actions,omitempty"`
	Icon           string   `json:"icon,omitempty"`
	Limits         Limits   `json:"limits,omitempty"`
	// APIPath is where the app serves its API to programs that are not
	// browsers (DAV clients, scripts, other grains): a request to the
	// node's API origin for /x reaches the app at APIPath + "x". Empty:
	// the app offers no API, and the node makes no API tokens for it.
	APIPath string `json:"apiPath,omitempty"`
	// Offers names the APIs the app serves at APIPath, such as
	// "erg.todo/v1", so that another grain can ask the powerbox for "a
	// grain whose app offers" one.
	Offers []string `json:"offers,omitempty"`
	// Include lists absolute host paths the packer copies into the tree at
	// the same place (with the shared libraries of any ELF binary among
	// them), for native apps built around a program already on the host.
	Include []string `json:"include,omitempty"`
}

// Role is a named set of permissions a grain's user can hold.
type Role struct {
	Name        string   `json:"name"`
	Title       string   `json:"title,omitempty"`
	Permissions []string `json:"permissions"`
}

// Action is something the app offers to create, such as "New note".
type Action struct {
	Title string `json:"title"`
}

// Limits are the resources one grain of the app may use, enforced through
// the grain's cgroup; zero means the node's default.
type Limits struct {
	MemoryMB int `json:"memoryMB,omitempty"`
	Pids     int `json:"pids,omitempty"`
	// CPUPercent is a ceiling on the CPU one grain may use, in percent of
	// one core (200: two cores' worth); the node owner may change it per
	// grain.
	CPUPercent int `json:"cpuPercent,omitempty"`
	// DiskMB bounds what one grain keeps in /var, in MiB; the node owner
	// may change it per grain.
	DiskMB int `json:"diskMB,omitempty"`
}

// MaxDiskMB bounds limits.diskMB: 16 TiB.
const MaxDiskMB = 16 << 20

// maxCPUPercent bounds limits.cpuPercent: 1024 cores' worth.
const maxCPUPercent = 102400

var (
	appIDRe = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9._-]{0,127}$`)
	nameRe  = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,31}$`)
	offerRe = regexp.MustCompile(`^[a-z0-9][a-z0-9./_-]{0,63}$`)
)

// ParseManifest decodes and validates a manifest. Unknown fields are errors,
// so a typo never silently drops a setting.
//
// ParseManifest and ReadManifest are the unsigned, directory-form path: they
// accept a short id such as "notes" as well as an app id, for trees a
// developer runs in place. A signed package must carry the app id of the key
// that signed it; Pack and Open enforce that on top of ParseManifest.
func ParseManifest(data []byte) (*Manifest, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var m Manifest
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	if dec.More() {
		return nil, errors.New("manifest: trailing data after the JSON object")
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return &m, nil
}

// ReadManifest reads the manifest at the root of an app tree.
func ReadManifest(dir string) (*Manifest, error) {
	data, err := os.ReadFile(filepath.Join(dir, ManifestFile))
	if err != nil {
		return nil, fmt.Errorf("read manifest: %w", err)
	}
	return ParseManifest(data)
}

// Validate checks every field and names the first one that is wrong.
func (m *Manifest) Validate() error {
	bad := func(field, format string, a ...any) error {
		return fmt.Errorf("manifest field %q: %s", field, fmt.Sprintf(format, a...))
	}
	switch {
	case !appIDRe.MatchString(m.ID):
		return bad("id", "must be 1-128 letters, digits, '.', '_' or '-'")
	case strings.TrimSpace(m.Name) == "":
		return bad("name", "is required")
	case m.Version < 1:
		return bad("version", "must be a positive number")
	case len(m.Command) == 0 || !strings.HasPrefix(m.Command[0], "/"):
		return bad("command", "must start with an absolute path inside the package")
	case m.Port < 1 || m.Port > 65535:
		return bad("port", "must be between 1 and 65535")
	case len(m.Roles) == 0:
		return bad("roles", "at least one role is required")
	case m.Limits.MemoryMB < 0:
		return bad("limits.memoryMB", "must not be negative")
	case m.Limits.Pids < 0:
		return bad("limits.pids", "must not be negative")
	case m.Limits.CPUPercent < 0 || m.Limits.CPUPercent > maxCPUPercent:
		return bad("limits.cpuPercent", "must be between 0 (no ceiling) and %d", maxCPUPercent)
	case m.Limits.DiskMB < 0 || m.Limits.DiskMB > MaxDiskMB:
		return bad("limits.diskMB", "must be between 0 (the node's default) and %d", MaxDiskMB)
	case len(m.Description) > 4096:
		return bad("description", "must be at most 4096 bytes")
	case m.Icon != "" && !isTreePath(m.Icon):
		return bad("icon", "must be a relative path inside the package, without '..'")
	case m.APIPath != "" && !IsAPIPath(m.APIPath):
		return bad("apiPath", "must be a clean absolute path that ends in '/', such as \"/\" or \"/dav/\"")
	}
	for i, o := range m.Offers {
		if !offerRe.MatchString(o) {
			return bad(fmt.Sprintf("offers[%d]", i), "must be 1-64 lowercase letters, digits, '.', '/', '_' or '-'")
		}
		if m.APIPath == "" {
			return bad("offers", "an app that offers an API must say where it serves it (apiPath)")
		}
	}
	for i, p := range m.Include {
		if !strings.HasPrefix(p, "/") || path.Clean(p) != p || p == "/" {
			return bad(fmt.Sprintf("include[%d]", i), "must be a clean absolute host path other than /")
		}
	}
	seen := map[string]bool{}
	for i, r := range m.Roles {
		if !nameRe.MatchString(r.Name) {
			return bad(fmt.Sprintf("roles[%d].name", i), "must be lowercase letters, digits, '-' or '_'")
		}
		if seen[r.Name] {
			return bad(fmt.Sprintf("roles[%d].name", i), "duplicate role %q", r.Name)
		}
		seen[r.Name] = true
		for j, p := range r.Permissions {
			if !nameRe.MatchString(p) {
				return bad(fmt.Sprintf("roles[%d].permissions[%d]", i, j), "must be lowercase letters, digits, '-' or '_'")
			}
		}
	}
	if !seen[m.OwnerRole] {
		return bad("ownerRole", "must name one of the roles")
	}
	for i, a := range m.Actions {
		if strings.TrimSpace(a.Title) == "" {
			return bad(fmt.Sprintf("actions[%d].title", i), "is required")
		}
	}
	return nil
}

// isTreePath reports whether p is a clean relative slash path that stays
// inside a tree.
func isTreePath(p string) bool {
	return p != "" && p != "." && !strings.HasPrefix(p, "/") && path.Clean(p) == p &&
		p != ".." && !strings.HasPrefix(p, "../") && !strings.ContainsRune(p, 0)
}

// IsAPIPath reports whether p is a clean absolute URL path ending in "/"
// with nothing a URL would read as other than path: what a manifest's
// apiPath must be, and a friend's node's word for one.
func IsAPIPath(p string) bool {
	if p == "/" {
		return true
	}
	if len(p) > 256 || !strings.HasPrefix(p, "/") || !strings.HasSuffix(p, "/") || path.Clean(p)+"/" != p {
		return false
	}
	return !strings.ContainsFunc(p, func(r rune) bool { return r <= ' ' || r == '?' || r == '#' || r == '%' || r == '\\' || r == 0x7f })
}

// Role returns the named role, or false.
func (m *Manifest) Role(name string) (Role, bool) {
	for _, r := range m.Roles {
		if r.Name == name {
			return r, true
		}
	}
	return Role{}, false
}

// RolesWithin returns the roles that hold no permission the named role
// lacks, itself among them, in the manifest's order: the roles a user who
// holds it may hand on. An unknown role has none.
func (m *Manifest) RolesWithin(name string) []Role {
	own, ok := m.Role(name)
	if !ok {
		return nil
	}
	var out []Role
	for _, r := range m.Roles {
		if !slices.ContainsFunc(r.Permissions, func(p string) bool { return !slices.Contains(own.Permissions, p) }) {
			out = append(out, r)
		}
	}
	return out
}
