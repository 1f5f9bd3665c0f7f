package storage

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/imcluster/imcluster/node/apps"
	"github.com/imcluster/imcluster/node/limit"
	"github.com/imcluster/imcluster/node/store"
)

// ErrInvalidSessionToken is returned by UserBySessionToken for an unknown
// token.
var ErrInvalidSessionToken = errors.New("storage: invalid session token")

// MaxFileSizeLimit is the largest Config.MaxFileSize: an uploaded file is
// one replicated write, and the peer transport carries at most 4 MiB in one
// frame; 256 KiB are left for the file record, keys and framing. A larger
// file would be written on its coordinator and then fail to replicate.
const MaxFileSizeLimit = 4<<20 - 256<<10

// DefaultMaxFileSize is the upload limit when Config.MaxFileSize is zero.
const DefaultMaxFileSize = 3 << 20

// App is the part of an app's configuration the shim needs.
type App struct {
	ID        string
	Key       string
	MasterKey string
	// AccountRequestsPerMinutePerIP bounds sign-ups and logins per source
	// address (apps.Limits); zero or less means no limit.
	AccountRequestsPerMinutePerIP int
	// FailedLoginsPerUser bounds wrong passwords per username within
	// apps.FailedLoginWindow; zero or less means no limit.
	FailedLoginsPerUser int
}

// appLimits are the limiters of one app, made on its first request.
type appLimits struct {
	accounts *limit.Rate // key: source address
	failures *limit.Rate // key: username
}

// Config configures a Service.
type Config struct {
	// Store holds the records. Required.
	Store store.KV
	// LookupApp returns the app with the given id. Required.
	LookupApp func(appID string) (App, bool)
	// Shard is the store shard whose FamUser/FamFile families hold the
	// records. Zero value means shard 0.
	Shard uint16
	// MaxFileSize is the largest accepted upload in bytes, at most
	// MaxFileSizeLimit. Zero value means DefaultMaxFileSize (3 MiB).
	MaxFileSize int64
	// BaseURL returns the scheme://host under which the client reached us;
	// file URLs handed to clients start with it. An empty answer refuses
	// the request (400): the Host it would be built from is not trusted. Zero value means
	// "http://" + r.Host.
	BaseURL func(r *http.Request) string
	// SignWindow is how far an X-LC-Sign timestamp may be from now. Zero value
	// means 15 minutes.
	SignWindow time.Duration
	// PasswordIterations is the PBKDF2 iteration count for new passwords. Zero
	// value means 100000.
	PasswordIterations int
	// Now is the clock. Zero value means time.Now.
	Now func() time.Time
	// Logger is the component logger. Zero value means slog.Default().
	Logger *slog.Logger
}

// Validate reports a configuration error.
func (c *Config) Validate() error {
	if c.Store == nil {
		return errors.New("storage: Store is required")
	}
	if c.LookupApp == nil {
		return errors.New("storage: LookupApp is required")
	}
	if c.MaxFileSize < 0 || c.SignWindow < 0 || c.PasswordIterations < 0 {
		return errors.New("storage: MaxFileSize, SignWindow and PasswordIterations must not be negative")
	}
	if c.MaxFileSize > MaxFileSizeLimit {
		return fmt.Errorf("storage: MaxFileSize %d is above %d, the most one replicated write carries", c.MaxFileSize, MaxFileSizeLimit)
	}
	return nil
}

func (c *Config) ensureDefaults() {
	if c.MaxFileSize == 0 {
		c.MaxFileSize = DefaultMaxFileSize
	}
	if c.BaseURL == nil {
		c.BaseURL = func(r *http.Request) string { return "http://" + r.Host }
	}
	if c.SignWindow == 0 {
		c.SignWindow = 15 * time.Minute
	}
	if c.PasswordIterations == 0 {
		c.PasswordIterations = 100000
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Service serves the storage REST shim. It is safe for concurrent use; mu
// serialises the read-check-write sequences that keep usernames unique and
// upload tokens single-use.
type Service struct {
	cfg Config
	log *slog.Logger
	// dummySalt is hashed against when a login names no user, so that the
	// answer takes as long as for a wrong password.
	dummySalt string

	mu sync.Mutex

	// limitsMu guards limits (app id -> its limiters; one entry per
	// configured app that was used).
	limitsMu sync.Mutex
	limits   map[string]*appLimits
}

// New returns a Service.
func New(cfg Config) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.ensureDefaults()
	return &Service{
		cfg: cfg, log: cfg.Logger.With("component", "storage"), dummySalt: randomHex(16),
		limits: make(map[string]*appLimits),
	}, nil
}

// limitsOf returns app's limiters.
func (s *Service) limitsOf(app App) *appLimits {
	s.limitsMu.Lock()
	defer s.limitsMu.Unlock()
	l, ok := s.limits[app.ID]
	if !ok {
		l = &appLimits{
			accounts: limit.NewRate(float64(app.AccountRequestsPerMinutePerIP)/60, app.AccountRequestsPerMinutePerIP, 0, s.cfg.Now),
			failures: limit.NewRate(float64(app.FailedLoginsPerUser)/apps.FailedLoginWindow, app.FailedLoginsPerUser, 0, s.cfg.Now),
		}
		s.limits[app.ID] = l
	}
	return l
}

// Handler returns the HTTP handler. It serves full paths starting with
// "/1.1/" (see the package doc); mount it at "/1.1/" next to more specific
// routes such as "/1.1/rtm/".
func (s *Service) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /1.1/users", s.app(s.signUp))
	mux.HandleFunc("POST /1.1/login", s.app(s.logIn))
	mux.HandleFunc("GET /1.1/users/me", s.app(s.me))
	mux.HandleFunc("GET /1.1/users/{id}", s.app(s.getUser))
	mux.HandleFunc("POST /1.1/fileTokens", s.app(s.fileToken))
	mux.HandleFunc("PUT /1.1/fileUpload/{id}", s.upload)
	mux.HandleFunc("POST /1.1/fileCallback", s.app(s.fileCallback))
	mux.HandleFunc("POST /1.1/files", s.app(s.createExternalFile))
	mux.HandleFunc("GET /1.1/files/{id}", s.app(s.getFile))
	mux.HandleFunc("DELETE /1.1/files/{id}", s.app(s.deleteFile))
	mux.HandleFunc("GET /1.1/files/{id}/content", s.download)
	mux.HandleFunc("/1.1/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, codeNotFound, fmt.Sprintf("%s %s is not supported by this server", r.Method, r.URL.Path))
	})
	return mux
}

// UserBySessionToken returns the objectId of the _User that token belongs
// to, or ErrInvalidSessionToken.
func (s *Service) UserBySessionToken(ctx context.Context, appID, token string) (userID string, err error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	if token == "" {
		return "", ErrInvalidSessionToken
	}
	id, err := s.cfg.Store.Get(s.key(appID, store.FamUser, "st").Str(token))
	if errors.Is(err, store.ErrNotFound) {
		return "", ErrInvalidSessionToken
	}
	if err != nil {
		return "", fmt.Errorf("storage: look up session token: %w", err)
	}
	return string(id), nil
}

// key starts a key of this service's records: shard, app, family, kind.
func (s *Service) key(appID string, fam store.Family, kind string) store.Key {
	return store.NewKey(s.cfg.Shard, appID, fam).Str(kind)
}

func (s *Service) getJSON(k store.Key, v any) error {
	b, err := s.cfg.Store.Get(k)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("storage: decode record: %w", err)
	}
	return nil
}

func (s *Service) now() time.Time { return s.cfg.Now().UTC() }

// isoTime formats t as LeanCloud does: ISO-8601 UTC with milliseconds.
func isoTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }

// newObjectID returns a 24-hex-character id like LeanCloud's.
func newObjectID() string { return randomHex(12) }

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return hex.EncodeToString(b)
}
