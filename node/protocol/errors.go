package protocol

import (
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/imcluster/imcluster/node/protocol/pb"
)

// Error is a client-visible protocol error: a stable numeric code and the
// symbolic reason the SDKs compare verbatim (JS uses it as Error.message and
// Error.name). Detail is free text for humans. Temporary marks errors a client
// may retry unchanged (the cluster is busy, a node is unreachable).
//
// Errors are values; the table below holds the canonical ones and WithDetail
// returns a copy, so sharing them between goroutines is safe.
type Error struct {
	Code      int32
	Reason    string
	Detail    string
	Temporary bool
	// Pids lists the client ids an entry of failedPids applies to.
	Pids []string
	// AppCode and AppMsg carry an app hook's rejection code and message
	// (4305, 4402, 4405).
	AppCode int32
	AppMsg  string
}

func (e *Error) Error() string {
	if e.Detail != "" {
		return fmt.Sprintf("%d %s: %s", e.Code, e.Reason, e.Detail)
	}
	return fmt.Sprintf("%d %s", e.Code, e.Reason)
}

// Is makes errors.Is match on the code, so callers can compare against the
// table entries even after WithDetail.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code
}

// WithDetail returns a copy of e with a human-readable detail.
func (e *Error) WithDetail(format string, args ...any) *Error {
	c := *e
	c.Detail = fmt.Sprintf(format, args...)
	return &c
}

// WithPids returns a copy of e that applies to the given client ids.
func (e *Error) WithPids(pids ...string) *Error {
	c := *e
	c.Pids = pids
	return &c
}

// Proto returns the ErrorCommand form of e (also the element of failedPids).
func (e *Error) Proto() *pb.ErrorCommand {
	ec := &pb.ErrorCommand{Code: proto.Int32(e.Code), Reason: proto.String(e.Reason)}
	if e.Detail != "" {
		ec.Detail = proto.String(e.Detail)
	}
	if len(e.Pids) > 0 {
		ec.Pids = e.Pids
	}
	if e.AppCode != 0 {
		ec.AppCode = proto.Int32(e.AppCode)
	}
	if e.AppMsg != "" {
		ec.AppMsg = proto.String(e.AppMsg)
	}
	return ec
}

// The error table (LEANCLOUD-RTM.md section 3.15.2). Codes and reasons are wire
// contract: never change them.
var (
	ErrCloseNormal                = &Error{Code: 1000, Reason: "CLOSE_NORMAL"}
	ErrAppNotAvailable            = &Error{Code: 4100, Reason: "APP_NOT_AVAILABLE"}
	ErrSignatureFailed            = &Error{Code: 4102, Reason: "SIGNATURE_FAILED"}
	ErrInvalidLogin               = &Error{Code: 4103, Reason: "INVALID_LOGIN"}
	ErrSessionRequired            = &Error{Code: 4105, Reason: "SESSION_REQUIRED"}
	ErrReadTimeout                = &Error{Code: 4107, Reason: "READ_TIMEOUT"}
	ErrLoginTimeout               = &Error{Code: 4108, Reason: "LOGIN_TIMEOUT"}
	ErrFrameTooLong               = &Error{Code: 4109, Reason: "FRAME_TOO_LONG"}
	ErrSessionConflict            = &Error{Code: 4111, Reason: "SESSION_CONFLICT"}
	ErrSessionTokenExpired        = &Error{Code: 4112, Reason: "SESSION_TOKEN_EXPIRED"}
	ErrUnparseableRawMessage      = &Error{Code: 4114, Reason: "UNPARSEABLE_RAW_MESSAGE"}
	ErrKickedByApp                = &Error{Code: 4115, Reason: "KICKED_BY_APP"}
	ErrMessageSentQuotaExceeded   = &Error{Code: 4116, Reason: "MESSAGE_SENT_QUOTA_EXCEEDED", Temporary: true}
	ErrInternal                   = &Error{Code: 4200, Reason: "INTERNAL_ERROR", Temporary: true}
	ErrConversationInternal       = &Error{Code: 4300, Reason: "CONVERSATION_INTERNAL_ERROR", Temporary: true}
	ErrConversationAPIFailed      = &Error{Code: 4301, Reason: "CONVERSATION_API_FAILED", Temporary: true}
	ErrConversationSignature      = &Error{Code: 4302, Reason: "CONVERSATION_SIGNATURE_FAILED"}
	ErrConversationNotFound       = &Error{Code: 4303, Reason: "CONVERSATION_NOT_FOUND"}
	ErrConversationFull           = &Error{Code: 4304, Reason: "CONVERSATION_FULL"}
	ErrConversationRejectedByApp  = &Error{Code: 4305, Reason: "CONVERSATION_REJECTED_BY_APP"}
	ErrConversationUpdateFailed   = &Error{Code: 4306, Reason: "CONVERSATION_UPDATE_FAILED"}
	ErrConversationReadOnly       = &Error{Code: 4307, Reason: "CONVERSATION_READ_ONLY"}
	ErrConversationNotAllowed     = &Error{Code: 4308, Reason: "CONVERSATION_NOT_ALLOWED"}
	ErrConversationUpdateRejected = &Error{Code: 4309, Reason: "CONVERSATION_UPDATE_REJECTED"}
	ErrConversationQueryFailed    = &Error{Code: 4310, Reason: "CONVERSATION_QUERY_FAILED"}
	ErrConversationAPIQuota       = &Error{Code: 4318, Reason: "CONVERSATION_API_QUOTA_EXCEEDED", Temporary: true}
	ErrConversationLogFailed      = &Error{Code: 4311, Reason: "CONVERSATION_LOG_FAILED"}
	ErrConversationLogRejected    = &Error{Code: 4312, Reason: "CONVERSATION_LOG_REJECTED"}
	ErrSystemConversationRequired = &Error{Code: 4313, Reason: "SYSTEM_CONVERSATION_REQUIRED"}
	ErrNormalConversationRequired = &Error{Code: 4314, Reason: "NORMAL_CONVERSATION_REQUIRED"}
	ErrConversationBlacklisted    = &Error{Code: 4315, Reason: "CONVERSATION_BLACKLISTED"}
	ErrTransientConvRequired      = &Error{Code: 4316, Reason: "TRANSIENT_CONVERSATION_REQUIRED"}
	ErrMembershipRequired         = &Error{Code: 4317, Reason: "CONVERSATION_MEMBERSHIP_REQUIRED"}
	ErrOperationUnauthorized      = &Error{Code: 4320, Reason: "CONVERSATION_OPERATION_UNAUTHORIZED"}
	ErrUnknownConversationRole    = &Error{Code: 4321, Reason: "UNKNOWN_CONVERSATION_ROLE"}
	ErrConversationNeedOwner      = &Error{Code: 4324, Reason: "CONVERSATION_NEED_OWNER"}
	ErrMemberInfoFeatureDisabled  = &Error{Code: 4325, Reason: "CONVERSATION_MEMBER_INFO_FEATURE_DISABLED"}
	ErrInvalidMessagingTarget     = &Error{Code: 4401, Reason: "INVALID_MESSAGING_TARGET"}
	ErrMessageRejectedByApp       = &Error{Code: 4402, Reason: "MESSAGE_REJECTED_BY_APP"}
	ErrMessageOwnershipRequired   = &Error{Code: 4403, Reason: "MESSAGE_OWNERSHIP_REQUIRED"}
	ErrMessageNotFound            = &Error{Code: 4404, Reason: "MESSAGE_NOT_FOUND"}
	ErrMessageUpdateRejectedByApp = &Error{Code: 4405, Reason: "MESSAGE_UPDATE_REJECTED_BY_APP"}
	ErrMessageEditDisabled        = &Error{Code: 4406, Reason: "MESSAGE_EDIT_DISABLED"}
	ErrMessageRecallDisabled      = &Error{Code: 4407, Reason: "MESSAGE_RECALL_DISABLED"}
	ErrBlacklistFull              = &Error{Code: 4543, Reason: "BLACKLIST_FULL"}
	ErrBlockedByConv              = &Error{Code: 4548, Reason: "BLOCKED_BY_CONV"}
	ErrSilencedMemberListFull     = &Error{Code: 4561, Reason: "SILIENCED_MEMBER_LIST_FULL"}
	ErrSilenced                   = &Error{Code: 4563, Reason: "SILIENCED"}
	// ErrUnavailable is returned when the node (or, in a cluster, the shard's
	// coordinator) cannot serve the request right now. Clients should retry.
	ErrUnavailable = &Error{Code: 4200, Reason: "INTERNAL_ERROR", Detail: "service temporarily unavailable, retry", Temporary: true}
	// ErrStorageFull answers a write the cluster refused because too few
	// of its shard's replicas have storage left (their disks are below the
	// reserve): nothing was stored. LeanCloud has no "storage full" code;
	// it is 4301 CONVERSATION_API_FAILED, not the 4200 that clients retry
	// at once (a lease moving), since it lasts until an operator frees
	// space. Reads still work. Compare the detail (DetailStorageFull) to
	// tell it from other 4301s.
	ErrStorageFull = &Error{Code: 4301, Reason: "CONVERSATION_API_FAILED", Detail: DetailStorageFull, Temporary: true}
)

// DetailStorageFull is ErrStorageFull's detail: a stable text.
const DetailStorageFull = "the server's storage is full: writes are refused until space is freed (reads still work)"

// Details of ErrUnavailable that name why the cluster could not serve a
// command within its retry budget (docs/replication.md, "Failover is a
// pause"): stable texts, so that clients and tests can tell them apart.
const (
	// DetailNoCoordinator: no replica of the conversation's shard could
	// take or confirm its lease (the shard was unreachable or moving).
	DetailNoCoordinator = "the cluster cannot serve this conversation right now, retry"
	// DetailQuorum: the coordinator could not reach its write quorum; the
	// write was not acknowledged.
	DetailQuorum = "write quorum not reached: the message was not acknowledged, retry"
	// DetailCoordinatorSilent: the coordinator did not answer a command
	// that is not safe to run twice; it may have run.
	DetailCoordinatorSilent = "the conversation's coordinator did not answer, retry"
)
