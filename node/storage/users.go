package storage

import (
	"crypto/pbkdf2"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/imcluster/imcluster/node/apps"
	"github.com/imcluster/imcluster/node/store"
)

// userRecord is a stored _User. Keys (family FamUser):
//
//	"id"   objectId     -> userRecord JSON
//	"name" username     -> objectId
//	"st"   sessionToken -> objectId
type userRecord struct {
	ObjectID     string                     `json:"objectId"`
	Username     string                     `json:"username"`
	Email        string                     `json:"email,omitempty"`
	PasswordHash string                     `json:"passwordHash"`
	Salt         string                     `json:"salt"`
	Iterations   int                        `json:"iterations"`
	SessionToken string                     `json:"sessionToken"`
	CreatedAt    string                     `json:"createdAt"`
	UpdatedAt    string                     `json:"updatedAt"`
	Extra        map[string]json.RawMessage `json:"extra,omitempty"`
}

// reservedUserFields cannot be set by a client on sign-up.
var reservedUserFields = map[string]bool{
	"objectId": true, "createdAt": true, "updatedAt": true, "sessionToken": true,
	"username": true, "password": true, "email": true, "emailVerified": true,
	"mobilePhoneVerified": true, "authData": true, "ACL": true,
}

// public returns the user as the REST API shows it to the user themselves
// (withToken adds the session token) or to the master key.
func (u *userRecord) public(withToken bool) map[string]any {
	out := u.others()
	if u.Email != "" {
		out["email"] = u.Email
	}
	out["emailVerified"] = false
	out["mobilePhoneVerified"] = false
	if withToken {
		out["sessionToken"] = u.SessionToken
	}
	return out
}

// others returns what any client of the app may see of the user: the id,
// username, timestamps and the custom fields it signed up with (public
// profile fields such as a nickname, like LeanCloud's default public-read
// _User). Email and verification state are for the user and the master
// key only.
func (u *userRecord) others() map[string]any {
	out := make(map[string]any, len(u.Extra)+8)
	for k, v := range u.Extra {
		out[k] = v
	}
	out["objectId"] = u.ObjectID
	out["username"] = u.Username
	out["createdAt"] = u.CreatedAt
	out["updatedAt"] = u.UpdatedAt
	return out
}

func hashPassword(password, salt string, iterations int) (string, error) {
	dk, err := pbkdf2.Key(sha256.New, password, []byte(salt), iterations, 32)
	if err != nil {
		return "", fmt.Errorf("storage: hash password: %w", err)
	}
	return base64.RawStdEncoding.EncodeToString(dk), nil
}

// stringField extracts an optional string field of a JSON object body.
func stringField(body map[string]json.RawMessage, name string) (string, bool) {
	raw, ok := body[name]
	if !ok {
		return "", true
	}
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return "", false
	}
	return s, true
}

func (s *Service) signUp(w http.ResponseWriter, req request) {
	if !s.allowAccountRequest(w, req) {
		return
	}
	var body map[string]json.RawMessage
	if !decodeBody(w, req.r, &body) {
		return
	}
	username, ok1 := stringField(body, "username")
	password, ok2 := stringField(body, "password")
	email, ok3 := stringField(body, "email")
	switch {
	case !ok1 || username == "":
		writeError(w, http.StatusBadRequest, codeUsernameEmpty, "Username is missing or empty.")
		return
	case !ok2 || password == "":
		writeError(w, http.StatusBadRequest, codePasswordEmpty, "Password is missing or empty.")
		return
	case !ok3:
		writeError(w, http.StatusBadRequest, codeInvalidJSON, "email must be a string.")
		return
	}
	now := isoTime(s.now())
	u := userRecord{
		ObjectID: newObjectID(), Username: username, Email: email, Salt: randomHex(16),
		Iterations: s.cfg.PasswordIterations, SessionToken: randomHex(16), CreatedAt: now, UpdatedAt: now,
	}
	for k, v := range body {
		if !reservedUserFields[k] {
			if u.Extra == nil {
				u.Extra = make(map[string]json.RawMessage)
			}
			u.Extra[k] = v
		}
	}
	var err error
	if u.PasswordHash, err = hashPassword(password, u.Salt, u.Iterations); err != nil {
		s.internalError(w, "signup", err)
		return
	}
	rec, err := json.Marshal(&u) //nolint:gosec // the stored user record holds its session token by design
	if err != nil {
		s.internalError(w, "signup", err)
		return
	}
	app := req.app.ID
	s.mu.Lock()
	defer s.mu.Unlock()
	nameKey := s.key(app, store.FamUser, "name").Str(username)
	switch _, err := s.cfg.Store.Get(nameKey); {
	case err == nil:
		writeError(w, http.StatusBadRequest, codeUsernameTaken, "Username has already been taken.")
		return
	case !errors.Is(err, store.ErrNotFound):
		s.internalError(w, "signup", err)
		return
	}
	b := s.cfg.Store.NewBatch()
	b.Set(s.key(app, store.FamUser, "id").Str(u.ObjectID), rec)
	b.Set(nameKey, []byte(u.ObjectID))
	b.Set(s.key(app, store.FamUser, "st").Str(u.SessionToken), []byte(u.ObjectID))
	if err := s.cfg.Store.Commit(b); err != nil {
		s.internalError(w, "signup", err)
		return
	}
	writeJSON(w, http.StatusCreated, map[string]any{
		"objectId": u.ObjectID, "createdAt": u.CreatedAt, "sessionToken": u.SessionToken,
	})
}

// logIn checks a username and password. Its errors do not tell whether the
// username exists (one answer, 210, after the same password-hashing work),
// and a username that saw FailedLoginsPerUser wrong passwords within
// apps.FailedLoginWindow is refused (219) until the window has passed.
func (s *Service) logIn(w http.ResponseWriter, req request) {
	if !s.allowAccountRequest(w, req) {
		return
	}
	var body map[string]json.RawMessage
	if !decodeBody(w, req.r, &body) {
		return
	}
	username, ok1 := stringField(body, "username")
	password, ok2 := stringField(body, "password")
	if !ok1 || username == "" {
		writeError(w, http.StatusBadRequest, codeUsernameEmpty, "Username is missing or empty.")
		return
	}
	if !ok2 || password == "" {
		writeError(w, http.StatusBadRequest, codePasswordEmpty, "Password is missing or empty.")
		return
	}
	lim := s.limitsOf(req.app)
	failKey := req.app.ID + "\x00" + username
	if lim.failures.Exhausted(failKey) {
		writeError(w, http.StatusTooManyRequests, codeLoginLocked, fmt.Sprintf(
			"Too many wrong passwords for this username; try again in up to %d minutes.", apps.FailedLoginWindow/60))
		return
	}
	u, err := s.userByName(req.app.ID, username)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		s.internalError(w, "login", err)
		return
	}
	salt, iterations, want := s.dummySalt, s.cfg.PasswordIterations, ""
	if u != nil {
		salt, iterations, want = u.Salt, u.Iterations, u.PasswordHash
	}
	hash, err := hashPassword(password, salt, iterations)
	if err != nil {
		s.internalError(w, "login", err)
		return
	}
	if u == nil || !equal(hash, want) {
		lim.failures.Allow(failKey)
		writeError(w, http.StatusBadRequest, codeBadPassword, "The username and password mismatch.")
		return
	}
	writeJSON(w, http.StatusOK, u.public(true))
}

// userByName loads the user named username, or returns store.ErrNotFound.
func (s *Service) userByName(app, username string) (*userRecord, error) {
	id, err := s.cfg.Store.Get(s.key(app, store.FamUser, "name").Str(username))
	if err != nil {
		return nil, err
	}
	return s.loadUser(app, string(id))
}

func (s *Service) me(w http.ResponseWriter, req request) {
	id, err := s.UserBySessionToken(req.r.Context(), req.app.ID, req.r.Header.Get("X-LC-Session"))
	if errors.Is(err, ErrInvalidSessionToken) {
		writeError(w, http.StatusBadRequest, codeUserNotFound, "Could not find user.")
		return
	}
	if err != nil {
		s.internalError(w, "me", err)
		return
	}
	u, err := s.loadUser(req.app.ID, id)
	if err != nil {
		s.internalError(w, "me", err)
		return
	}
	writeJSON(w, http.StatusOK, u.public(true))
}

// getUser answers a user record: in full to the master key and to the user
// themselves (X-LC-Session), the public fields (userRecord.others) to
// anyone else.
func (s *Service) getUser(w http.ResponseWriter, req request) {
	u, err := s.loadUser(req.app.ID, req.r.PathValue("id"))
	if errors.Is(err, store.ErrNotFound) {
		writeError(w, http.StatusNotFound, codeObjectMissing, "Object not found.")
		return
	}
	if err != nil {
		s.internalError(w, "get user", err)
		return
	}
	if req.master {
		writeJSON(w, http.StatusOK, u.public(false))
		return
	}
	if tok := req.r.Header.Get("X-LC-Session"); tok != "" && equal(tok, u.SessionToken) {
		writeJSON(w, http.StatusOK, u.public(false))
		return
	}
	writeJSON(w, http.StatusOK, u.others())
}

func (s *Service) loadUser(app, id string) (*userRecord, error) {
	var u userRecord
	if err := s.getJSON(s.key(app, store.FamUser, "id").Str(id), &u); err != nil {
		return nil, err
	}
	return &u, nil
}
