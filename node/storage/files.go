package storage

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"path"
	"strconv"

	"github.com/imcluster/imcluster/node/store"
)

// File states. A file from fileTokens is pending until its bytes arrive,
// uploaded until the SDK's fileCallback confirms it, then saved. External
// (withURL) files are saved at once.
const (
	filePending  = "pending"
	fileUploaded = "uploaded"
	fileSaved    = "saved"
)

// fileRecord is a stored _File. Keys (family FamFile):
//
//	"id"   objectId    -> fileRecord JSON
//	"data" objectId    -> the uploaded bytes
//	"tok"  uploadToken -> objectId (while the upload is unfinished)
type fileRecord struct {
	ObjectID  string          `json:"objectId"`
	Name      string          `json:"name"`
	URL       string          `json:"url"`
	MimeType  string          `json:"mime_type"`
	MetaData  json.RawMessage `json:"metaData,omitempty"`
	Size      int64           `json:"size"`
	External  bool            `json:"external"`
	Token     string          `json:"token,omitempty"`
	State     string          `json:"state"`
	Owner     string          `json:"owner,omitempty"`
	CreatedAt string          `json:"createdAt"`
	UpdatedAt string          `json:"updatedAt"`
}

func (f *fileRecord) public() map[string]any {
	out := map[string]any{
		"objectId": f.ObjectID, "name": f.Name, "url": f.URL, "mime_type": f.MimeType,
		"createdAt": f.CreatedAt, "updatedAt": f.UpdatedAt,
	}
	if len(f.MetaData) > 0 {
		out["metaData"] = f.MetaData
	} else {
		out["metaData"] = map[string]any{}
	}
	if !f.External {
		out["bucket"] = bucketName
		out["provider"] = "s3"
	}
	return out
}

// bucketName is reported as the upload bucket; clients only echo it.
const bucketName = "imcluster"

type fileBody struct {
	Name     string          `json:"name"`
	URL      string          `json:"url"`
	MimeType string          `json:"mime_type"`
	MetaData json.RawMessage `json:"metaData"`
}

// metaObject accepts an absent/null metaData or a JSON object.
func metaObject(raw json.RawMessage) (json.RawMessage, bool) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, true
	}
	var m map[string]json.RawMessage
	if json.Unmarshal(raw, &m) != nil {
		return nil, false
	}
	return raw, true
}

func mimeFor(name, given string) string {
	if given != "" {
		return given
	}
	if t := mime.TypeByExtension(path.Ext(name)); t != "" {
		return t
	}
	return "application/octet-stream"
}

// fileToken starts an upload and steers the SDK to its "s3" uploader, whose
// PUT goes to upload_url on this server.
func (s *Service) fileToken(w http.ResponseWriter, req request) {
	var body fileBody
	if !decodeBody(w, req.r, &body) {
		return
	}
	meta, ok := metaObject(body.MetaData)
	if body.Name == "" || !ok {
		writeError(w, http.StatusBadRequest, codeInvalidJSON, "fileTokens needs a name and an object metaData.")
		return
	}
	now := isoTime(s.now())
	f := fileRecord{
		ObjectID: newObjectID(), Name: body.Name, MimeType: mimeFor(body.Name, body.MimeType), MetaData: meta,
		Token: randomHex(16), State: filePending, CreatedAt: now, UpdatedAt: now,
	}
	f.Owner, _ = s.UserBySessionToken(req.r.Context(), req.app.ID, req.r.Header.Get("X-LC-Session"))
	base := s.cfg.BaseURL(req.r)
	if base == "" {
		writeError(w, http.StatusBadRequest, codeInvalidJSON, "The Host header names no host this server serves; cannot build the file URL.")
		return
	}
	f.URL = base + "/1.1/files/" + f.ObjectID + "/content?" + url.Values{"app": {req.app.ID}}.Encode()
	b := s.cfg.Store.NewBatch()
	if err := s.putFile(b, req.app.ID, &f); err != nil {
		b.Close()
		s.internalError(w, "file token", err)
		return
	}
	b.Set(s.key(req.app.ID, store.FamFile, "tok").Str(f.Token), []byte(f.ObjectID))
	if err := s.cfg.Store.Commit(b); err != nil {
		s.internalError(w, "file token", err)
		return
	}
	uploadURL := base + "/1.1/fileUpload/" + f.ObjectID + "?" + url.Values{"app": {req.app.ID}, "token": {f.Token}}.Encode()
	writeJSON(w, http.StatusOK, map[string]any{
		"objectId": f.ObjectID, "createdAt": f.CreatedAt, "token": f.Token, "url": f.URL,
		"upload_url": uploadURL, "provider": "s3", "bucket": bucketName, "mime_type": f.MimeType,
		"key": f.ObjectID,
	})
}

// upload receives the bytes. Like an S3 pre-signed URL it carries its own
// authorisation (the upload token) and no app headers. The token is checked
// before a byte of the body is read, and the body is read only up to
// MaxFileSize: an unauthorised or oversized upload costs the node nothing
// but the request headers.
func (s *Service) upload(w http.ResponseWriter, r *http.Request) {
	app, token := r.URL.Query().Get("app"), r.URL.Query().Get("token")
	if _, ok := s.pendingUpload(w, app, r.PathValue("id"), token); !ok {
		return
	}
	if r.ContentLength > s.cfg.MaxFileSize {
		s.tooLarge(w)
		return
	}
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxFileSize))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			s.tooLarge(w)
			return
		}
		writeError(w, http.StatusBadRequest, codeInvalidJSON, "Could not read the upload body.")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	// Checked again under mu: the token is single-use, and a concurrent
	// upload with it may have finished while this body was read.
	f, ok := s.pendingUpload(w, app, r.PathValue("id"), token)
	if !ok {
		return
	}
	f.State, f.Size, f.UpdatedAt = fileUploaded, int64(len(data)), isoTime(s.now())
	if ct := r.Header.Get("Content-Type"); ct != "" {
		f.MimeType = ct
	}
	b := s.cfg.Store.NewBatch()
	if err := s.putFile(b, app, f); err != nil {
		b.Close()
		s.internalError(w, "upload", err)
		return
	}
	b.Set(s.key(app, store.FamFile, "data").Str(f.ObjectID), data)
	if err := s.cfg.Store.Commit(b); err != nil {
		s.internalError(w, "upload", err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{})
}

// pendingUpload returns the pending file id of app whose upload token is
// token, or answers 403 and returns false.
func (s *Service) pendingUpload(w http.ResponseWriter, app, id, token string) (*fileRecord, bool) {
	if app == "" || id == "" || token == "" {
		writeError(w, http.StatusForbidden, codeUnauthorized, "Unknown or used upload token.")
		return nil, false
	}
	f, err := s.loadFile(app, id)
	if errors.Is(err, store.ErrNotFound) || (err == nil && (f.State != filePending || !equal(f.Token, token))) {
		writeError(w, http.StatusForbidden, codeUnauthorized, "Unknown or used upload token.")
		return nil, false
	}
	if err != nil {
		s.internalError(w, "upload", err)
		return nil, false
	}
	return f, true
}

func (s *Service) tooLarge(w http.ResponseWriter) {
	writeError(w, http.StatusRequestEntityTooLarge, codeFileTooLarge,
		fmt.Sprintf("File is larger than the %d-byte upload limit.", s.cfg.MaxFileSize))
}

// fileCallback ends an upload: result true keeps the file, false drops it.
func (s *Service) fileCallback(w http.ResponseWriter, req request) {
	var body struct {
		Token  string `json:"token"`
		Result bool   `json:"result"`
	}
	if !decodeBody(w, req.r, &body) {
		return
	}
	app := req.app.ID
	s.mu.Lock()
	defer s.mu.Unlock()
	tokKey := s.key(app, store.FamFile, "tok").Str(body.Token)
	id, err := s.cfg.Store.Get(tokKey)
	if errors.Is(err, store.ErrNotFound) {
		writeError(w, http.StatusNotFound, codeObjectMissing, "Unknown upload token.")
		return
	}
	if err != nil {
		s.internalError(w, "file callback", err)
		return
	}
	f, err := s.loadFile(app, string(id))
	if err != nil {
		s.internalError(w, "file callback", err)
		return
	}
	b := s.cfg.Store.NewBatch()
	b.Delete(tokKey)
	if body.Result && f.State == fileUploaded {
		f.State, f.Token = fileSaved, ""
		if err := s.putFile(b, app, f); err != nil {
			b.Close()
			s.internalError(w, "file callback", err)
			return
		}
	} else {
		b.Delete(s.key(app, store.FamFile, "id").Str(f.ObjectID))
		b.Delete(s.key(app, store.FamFile, "data").Str(f.ObjectID))
	}
	if err := s.cfg.Store.Commit(b); err != nil {
		s.internalError(w, "file callback", err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{})
}

// createExternalFile stores a file that only points at a URL.
func (s *Service) createExternalFile(w http.ResponseWriter, req request) {
	var body fileBody
	if !decodeBody(w, req.r, &body) {
		return
	}
	meta, ok := metaObject(body.MetaData)
	u, err := url.Parse(body.URL)
	if body.Name == "" || !ok || err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		writeError(w, http.StatusBadRequest, codeInvalidJSON, "An external file needs a name, an http(s) url and an object metaData.")
		return
	}
	now := isoTime(s.now())
	f := fileRecord{
		ObjectID: newObjectID(), Name: body.Name, URL: body.URL, MimeType: mimeFor(body.Name, body.MimeType),
		MetaData: meta, External: true, State: fileSaved, CreatedAt: now, UpdatedAt: now,
	}
	f.Owner, _ = s.UserBySessionToken(req.r.Context(), req.app.ID, req.r.Header.Get("X-LC-Session"))
	b := s.cfg.Store.NewBatch()
	if err := s.putFile(b, req.app.ID, &f); err != nil {
		b.Close()
		s.internalError(w, "create file", err)
		return
	}
	if err := s.cfg.Store.Commit(b); err != nil {
		s.internalError(w, "create file", err)
		return
	}
	writeJSON(w, http.StatusCreated, map[string]any{"objectId": f.ObjectID, "createdAt": f.CreatedAt, "url": f.URL})
}

func (s *Service) getFile(w http.ResponseWriter, req request) {
	f, err := s.loadFile(req.app.ID, req.r.PathValue("id"))
	if errors.Is(err, store.ErrNotFound) || (err == nil && f.State == filePending) {
		writeError(w, http.StatusNotFound, codeObjectMissing, "Object not found.")
		return
	}
	if err != nil {
		s.internalError(w, "get file", err)
		return
	}
	writeJSON(w, http.StatusOK, f.public())
}

// deleteFile removes a file; allowed with the master key or for its owner.
func (s *Service) deleteFile(w http.ResponseWriter, req request) {
	app := req.app.ID
	s.mu.Lock()
	defer s.mu.Unlock()
	f, err := s.loadFile(app, req.r.PathValue("id"))
	if errors.Is(err, store.ErrNotFound) {
		writeError(w, http.StatusNotFound, codeObjectMissing, "Object not found.")
		return
	}
	if err != nil {
		s.internalError(w, "delete file", err)
		return
	}
	if !req.master {
		uid, err := s.UserBySessionToken(req.r.Context(), app, req.r.Header.Get("X-LC-Session"))
		if err != nil || f.Owner == "" || uid != f.Owner {
			writeError(w, http.StatusForbidden, 403, "Forbidden to delete this file.")
			return
		}
	}
	b := s.cfg.Store.NewBatch()
	b.Delete(s.key(app, store.FamFile, "id").Str(f.ObjectID))
	b.Delete(s.key(app, store.FamFile, "data").Str(f.ObjectID))
	if f.Token != "" {
		b.Delete(s.key(app, store.FamFile, "tok").Str(f.Token))
	}
	if err := s.cfg.Store.Commit(b); err != nil {
		s.internalError(w, "delete file", err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{})
}

// download serves uploaded bytes without authentication, as a CDN URL would.
// The file URL names the app in its query (records are kept per app).
func (s *Service) download(w http.ResponseWriter, r *http.Request) {
	app := r.URL.Query().Get("app")
	if app == "" {
		app = r.Header.Get("X-LC-Id")
	}
	f, err := s.loadFile(app, r.PathValue("id"))
	if err == nil && (f.External || f.State == filePending) {
		err = store.ErrNotFound
	}
	var data []byte
	if err == nil {
		data, err = s.cfg.Store.Get(s.key(app, store.FamFile, "data").Str(f.ObjectID))
	}
	if errors.Is(err, store.ErrNotFound) {
		writeError(w, http.StatusNotFound, codeObjectMissing, "File not found.")
		return
	}
	if err != nil {
		s.internalError(w, "download", err)
		return
	}
	// Uploaded bytes are user content served from the node's own origin:
	// never let a browser sniff or run them as a page of that origin.
	w.Header().Set("Content-Type", f.MimeType)
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; sandbox")
	w.Header().Set("Content-Length", strconv.Itoa(len(data)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(data) //nolint:gosec // served with nosniff and a sandboxing CSP (above)
}

func (s *Service) loadFile(app, id string) (*fileRecord, error) {
	var f fileRecord
	if err := s.getJSON(s.key(app, store.FamFile, "id").Str(id), &f); err != nil {
		return nil, err
	}
	return &f, nil
}

func (s *Service) putFile(b *store.Batch, app string, f *fileRecord) error {
	rec, err := json.Marshal(f)
	if err != nil {
		return fmt.Errorf("storage: encode file: %w", err)
	}
	b.Set(s.key(app, store.FamFile, "id").Str(f.ObjectID), rec)
	return nil
}
