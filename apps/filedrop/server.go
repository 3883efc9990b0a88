package main

import (
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"io/fs"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"syscall"

	"erg/apps/internal/appkit"
)

// formOverhead is how many bytes an upload's body may hold beyond the files
// themselves: multipart boundaries, part headers, other form fields.
const formOverhead = 1 << 20

//go:embed static/index.html
var static embed.FS

// identity is who is making a request, as the node's proxy asserts it.
type identity = appkit.Identity

func identityOf(r *http.Request) identity { return appkit.IdentityOf(r) }

// An app serves one drop box over HTTP.
type app struct {
	drop     *drop
	maxBytes int64 // the most file data one upload may hold
	log      *slog.Logger
	page     *template.Template
}

func newApp(d *drop, maxBytes int64, log *slog.Logger) *app {
	funcs := template.FuncMap{"pathEscape": url.PathEscape, "size": formatSize}
	return &app{
		drop:     d,
		maxBytes: maxBytes,
		log:      log,
		page:     template.Must(template.New("index.html").Funcs(funcs).ParseFS(static, "static/index.html")),
	}
}

func (a *app) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", a.servePage)
	mux.HandleFunc("POST /upload", a.writer(a.upload))
	mux.HandleFunc("GET /files/{name}", a.download)
	mux.HandleFunc("GET /api/files", a.listFiles)
	mux.HandleFunc("POST /files/{name}/delete", a.writer(a.delete))
	// Upload and delete are plain forms: refuse them when another site
	// submits them (Sec-Fetch-Site, or Origin against Host; the node's
	// proxy keeps the grain's Host).
	csrf := http.NewCrossOriginProtection()
	csrf.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.fail(w, r, http.StatusForbidden, "Refused: this form was sent from another site.")
	}))
	guarded := csrf.Handler(mux)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !identityOf(r).CanRead {
			a.fail(w, r, http.StatusForbidden, "You do not have permission to see this drop box.")
			return
		}
		guarded.ServeHTTP(w, r)
	})
}

// writer refuses a request from someone without write permission.
func (a *app) writer(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !identityOf(r).CanWrite {
			a.fail(w, r, http.StatusForbidden, "You can download from this drop box but not change it.")
			return
		}
		h(w, r)
	}
}

// pageData is what the page template shows.
type pageData struct {
	CanRead  bool
	CanWrite bool
	MaxSize  int64
	Files    []file
	Error    string
}

// render writes the page with the given status, showing message as an
// error if it is not empty. The page lists the files only to readers.
func (a *app) render(w http.ResponseWriter, r *http.Request, status int, message string) {
	id := identityOf(r)
	data := pageData{CanRead: id.CanRead, CanWrite: id.CanWrite, MaxSize: a.maxBytes, Error: message}
	if id.CanRead {
		files, err := a.drop.list()
		if err != nil {
			a.log.Error("list files", "err", err)
			status, data.Error = http.StatusInternalServerError, "The files could not be listed; try again."
		}
		data.Files = files
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(status)
	if err := a.page.Execute(w, data); err != nil {
		a.log.Error("render page", "err", err)
	}
}

// fail replies with status and the page showing message, so that a browser
// without JavaScript sees what went wrong and can try again.
func (a *app) fail(w http.ResponseWriter, r *http.Request, status int, message string) {
	a.render(w, r, status, message)
}

func (a *app) servePage(w http.ResponseWriter, r *http.Request) {
	a.render(w, r, http.StatusOK, "")
}

// upload receives a multipart form whose "file" parts are the files to
// store. It streams each to a temporary file and renames them all into
// place only once the whole request has arrived, so a refused or broken
// upload leaves nothing behind.
func (a *app) upload(w http.ResponseWriter, r *http.Request) {
	tooBig := fmt.Sprintf("The upload is too large; the limit is %s.", formatSize(a.maxBytes))
	if r.ContentLength > a.maxBytes+formOverhead {
		a.fail(w, r, http.StatusRequestEntityTooLarge, tooBig)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, a.maxBytes+formOverhead)
	mr, err := r.MultipartReader()
	if err != nil {
		a.fail(w, r, http.StatusBadRequest, "Uploads must be sent as a multipart/form-data form.")
		return
	}

	var ups []*upload
	defer func() {
		for _, u := range ups {
			u.discard()
		}
	}()
	names := map[string]bool{}
	var total int64
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			a.readFailed(w, r, err, tooBig)
			return
		}
		name, isFile := fileName(part.Header.Get("Content-Disposition"))
		if !isFile || part.FormName() != "file" || name == "" {
			// Other fields, and a file input left empty.
			if _, err := io.Copy(io.Discard, part); err != nil {
				a.readFailed(w, r, err, tooBig)
				return
			}
			continue
		}
		if err := checkName(name); err != nil {
			a.fail(w, r, http.StatusBadRequest, fmt.Sprintf("%q cannot be stored: %s.", name, err))
			return
		}
		if names[name] {
			a.fail(w, r, http.StatusBadRequest, fmt.Sprintf("%q is in the upload twice.", name))
			return
		}
		names[name] = true
		u, err := a.drop.create(name)
		if err != nil {
			a.writeFailed(w, r, err)
			return
		}
		ups = append(ups, u)
		src := &errReader{r: io.LimitReader(part, a.maxBytes-total+1)}
		n, err := io.Copy(u.f, src)
		total += n
		switch {
		case src.err != nil:
			a.readFailed(w, r, src.err, tooBig)
			return
		case err != nil:
			a.writeFailed(w, r, err)
			return
		case total > a.maxBytes:
			a.fail(w, r, http.StatusRequestEntityTooLarge, tooBig)
			return
		}
		if err := u.finish(); err != nil {
			a.writeFailed(w, r, err)
			return
		}
	}
	if len(ups) == 0 {
		a.fail(w, r, http.StatusBadRequest, "Choose a file to upload.")
		return
	}
	if err := a.drop.commit(ups); err != nil {
		a.writeFailed(w, r, err)
		return
	}
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// readFailed replies to an upload whose body could not be read.
func (a *app) readFailed(w http.ResponseWriter, r *http.Request, err error, tooBig string) {
	if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
		a.fail(w, r, http.StatusRequestEntityTooLarge, tooBig)
		return
	}
	a.fail(w, r, http.StatusBadRequest, "The upload could not be read; try again.")
}

// writeFailed replies to an upload that could not be stored.
func (a *app) writeFailed(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		a.fail(w, r, http.StatusInsufficientStorage, "The drop box is out of space.")
		return
	}
	a.log.Error("store upload", "err", err)
	a.fail(w, r, http.StatusInternalServerError, "The upload could not be stored; try again.")
}

// fileName returns the file name a multipart part's Content-Disposition
// gives, exactly as sent: unlike multipart.Part.FileName it does not strip
// directories, so that a name like "../x" is refused rather than changed.
func fileName(disposition string) (name string, isFile bool) {
	_, params, err := mime.ParseMediaType(disposition)
	if err != nil {
		return "", false
	}
	name, isFile = params["filename"]
	return name, isFile
}

func (a *app) download(w http.ResponseWriter, r *http.Request) {
	f, info, err := a.drop.open(r.PathValue("name"))
	if errors.Is(err, fs.ErrNotExist) {
		a.fail(w, r, http.StatusNotFound, "There is no such file; someone may have deleted it.")
		return
	}
	if err != nil {
		a.log.Error("open file", "err", err)
		a.fail(w, r, http.StatusInternalServerError, "The file could not be read; try again.")
		return
	}
	defer f.Close()
	h := w.Header()
	// Whatever was uploaded is only ever a download: never rendered, never
	// sniffed, and inert even if a browser did render it.
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": info.Name()}))
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", "default-src 'none'; sandbox")
	h.Set("Cache-Control", "no-cache")
	http.ServeContent(w, r, "", info.ModTime(), f)
}

// listFiles is the drop's files as JSON, for programs and for grains that
// reach the drop through the powerbox (the app offers erg.files/v1).
func (a *app) listFiles(w http.ResponseWriter, r *http.Request) {
	files, err := a.drop.list()
	if err != nil {
		a.log.Error("list files", "err", err)
		http.Error(w, "The files could not be listed; try again.", http.StatusInternalServerError)
		return
	}
	if files == nil {
		files = []file{}
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(files)
}

func (a *app) delete(w http.ResponseWriter, r *http.Request) {
	err := a.drop.remove(r.PathValue("name"))
	if errors.Is(err, fs.ErrNotExist) {
		a.fail(w, r, http.StatusNotFound, "There is no such file; someone may have deleted it already.")
		return
	}
	if err != nil {
		a.log.Error("delete file", "err", err)
		a.fail(w, r, http.StatusInternalServerError, "The file could not be deleted; try again.")
		return
	}
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// formatSize writes n bytes the way people read sizes.
func formatSize(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	v := float64(n) / float64(div)
	if v == float64(int64(v)) {
		return fmt.Sprintf("%d %ciB", int64(v), "KMGTP"[exp])
	}
	return fmt.Sprintf("%.1f %ciB", v, "KMGTP"[exp])
}
