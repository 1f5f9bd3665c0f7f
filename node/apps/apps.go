package apps

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"
)

// Development app credentials, used by `make run` and the test suites. Never
// enable the development app on a network-reachable node.
const (
	DevAppID     = "imcluster-dev"
	DevAppKey    = "imcluster-dev-key"
	DevMasterKey = "imcluster-dev-master"
)

// App is one tenant. Every stored key starts with its ID, so no request of one
// app can read or touch another's data.
type App struct {
	// ID is the appId the SDKs send. 1-64 characters.
	ID string `json:"appId"`
	// Key is the appKey (REST header X-LC-Key).
	Key string `json:"appKey"`
	// MasterKey signs and verifies signatures and authenticates the
	// server-side REST API (X-LC-Key: <masterKey>,master).
	MasterKey string `json:"masterKey"`
	// LoginSignature requires a valid signature on session/open. Zero value
	// means off: signature fields are then ignored, even fake ones.
	LoginSignature bool `json:"loginSignature,omitempty"`
	// ConversationSignature requires signatures on conv/start, add and remove.
	// Zero value means off.
	ConversationSignature bool `json:"conversationSignature,omitempty"`
	// DisableEdit and DisableRecall turn message editing and recalling from
	// the SDKs off (errors 4406 and 4407). Zero values mean both are allowed.
	DisableEdit   bool `json:"disableEdit,omitempty"`
	DisableRecall bool `json:"disableRecall,omitempty"`
	// Hooks configures server hooks, the system-conversation webhook and
	// offline push (docs/hooks.md). Zero value means none.
	Hooks *Hooks `json:"hooks,omitempty"`
	// SignStorageLogins lets POST /1.1/rtm/sign sign session/open for the
	// storage users of an app with LoginSignature: anyone with the appKey
	// can create a storage user, so on such an app the endpoint would hand
	// out logins to everyone. Zero value means off: with LoginSignature on,
	// /1.1/rtm/sign answers 403 and the app's own back end signs logins.
	// Without LoginSignature signatures are not checked and the endpoint
	// always answers.
	SignStorageLogins bool `json:"signStorageLogins,omitempty"`
	// QueryOwnConversationsOnly limits conv/query to the conversations the
	// caller is a member of and to chat rooms (transient conversations,
	// which anyone may join). Zero value means off: a query may match any
	// conversation of the app, as on LeanCloud (last messages are still
	// shown only to members).
	QueryOwnConversationsOnly bool `json:"queryOwnConversationsOnly,omitempty"`
	// Limits bound what the app's clients may cost a node. Zero fields
	// mean DefaultLimits; NewRegistry fills them in.
	Limits Limits `json:"limits,omitzero"`
}

// Validate reports a configuration error.
func (a *App) Validate() error {
	switch {
	case a.ID == "" || len(a.ID) > 64:
		return fmt.Errorf("apps: appId %q must be 1-64 characters", a.ID)
	case strings.ContainsAny(a.ID, "\x00/ "):
		return fmt.Errorf("apps: appId %q contains a NUL, slash or space", a.ID)
	case a.Key == "":
		return fmt.Errorf("apps: app %q has no appKey", a.ID)
	case a.MasterKey == "":
		return fmt.Errorf("apps: app %q has no masterKey", a.ID)
	case a.Key == a.MasterKey:
		return fmt.Errorf("apps: app %q uses the same appKey and masterKey", a.ID)
	}
	if a.Hooks != nil {
		if err := a.Hooks.Validate(); err != nil {
			return fmt.Errorf("app %q: %w", a.ID, err)
		}
	}
	if err := a.Limits.validate(); err != nil {
		return fmt.Errorf("apps: app %q: limits: %w", a.ID, err)
	}
	return nil
}

// Dev returns the built-in development app. Its clients have no
// per-client rates (sends, history queries, other operations: a
// developer's load test from a few client ids must not meet LeanCloud's
// limits); its other limits are the defaults. Its keys are public, so it
// is served only by insecure nodes.
func Dev() App {
	return App{ID: DevAppID, Key: DevAppKey, MasterKey: DevMasterKey, Limits: Limits{
		SendsPerMinutePerClient: -1, HistoryQueriesPerMinutePerClient: -1, OpsPerMinutePerClient: -1,
	}}
}

// Registry maps app ids to apps. It is immutable and safe for concurrent use.
type Registry struct {
	apps map[string]*App
}

// NewRegistry validates apps and builds a registry.
func NewRegistry(list []App) (*Registry, error) {
	r := &Registry{apps: make(map[string]*App, len(list))}
	for i := range list {
		a := list[i]
		if err := a.Validate(); err != nil {
			return nil, err
		}
		if _, dup := r.apps[a.ID]; dup {
			return nil, fmt.Errorf("apps: app %q configured twice", a.ID)
		}
		a.Limits = a.Limits.withDefaults()
		r.apps[a.ID] = &a
	}
	return r, nil
}

// Lookup returns the app with the given id.
func (r *Registry) Lookup(id string) (*App, bool) {
	a, ok := r.apps[id]
	return a, ok
}

// IDs returns the app ids, sorted.
func (r *Registry) IDs() []string {
	out := make([]string, 0, len(r.apps))
	for id := range r.apps {
		out = append(out, id)
	}
	slices.Sort(out)
	return out
}

// Len returns the number of apps.
func (r *Registry) Len() int { return len(r.apps) }

// File is the JSON layout of an apps file.
type File struct {
	Apps []App `json:"apps"`
}

// LoadFile reads apps from a JSON file (see File).
func LoadFile(path string) ([]App, error) {
	data, err := os.ReadFile(path) //nolint:gosec // the operator chooses the apps file
	if err != nil {
		return nil, fmt.Errorf("apps: read %s: %w", path, err)
	}
	var f File
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("apps: parse %s: %w", path, err)
	}
	if len(f.Apps) == 0 {
		return nil, fmt.Errorf("apps: %s lists no apps", path)
	}
	return f.Apps, nil
}

// SignatureValidity is how long a signature timestamp stays acceptable
// (LeanCloud: 6 hours), in either direction to tolerate clock skew.
const SignatureValidity = 6 * time.Hour

// ErrSignature is returned for a missing, expired or wrong signature.
var ErrSignature = errors.New("apps: invalid signature")
