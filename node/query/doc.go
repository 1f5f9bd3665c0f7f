// Package query compiles and evaluates the LeanCloud/Parse `where` language and sort specs of the
// `conv/query` command (protocol spec §3.8) over conversation documents.
//
// A conversation document is a map[string]any as produced by encoding/json.Unmarshal: numbers are
// float64, arrays are []any, objects are map[string]any. Dates are either ISO-8601 strings
// (createdAt, updatedAt) or LeanCloud date objects {"__type":"Date","iso":"..."} (lm, custom
// columns). Both forms compare as instants against a date operand.
//
// The package owns only the query language: Parse turns a where document into an immutable Filter,
// ParseSort turns a sort spec into a Sort. It does no I/O, keeps no state between calls and imports
// nothing of ours. It must not know about storage, sessions or protocol frames: the caller applies
// the default rule (empty where means {"m": me}, default sort "-lm"), paging and error mapping
// (every Parse and ParseSort error wraps ErrInvalid and maps to protocol error 4310
// CONVERSATION_QUERY_FAILED with err.Error() as the detail).
//
// # Where grammar
//
// Top-level keys are ANDed. A key is a column name or a dot path into nested objects ("attr.type");
// a path segment that is a decimal integer also indexes into an array ("m.0"). A value is either a
// literal (equality) or an object of operators, all of which must hold:
//
//	literal, $eq     equal; an array column matches if it equals the literal or contains it.
//	                 null matches a missing column. A date literal compares as an instant.
//	$ne              not $eq (a missing column matches).
//	$lt $lte $gt $gte  numbers against numbers, strings lexically against strings, date operands
//	                 against date objects and date strings (as instants). Mixed types never match.
//	                 An array column matches if any element does.
//	$in $nin         membership in a list (array columns: any element); $nin is not $in.
//	$all             array column contains every listed value (an empty list matches any array).
//	$size            array column has exactly n elements.
//	$exists          column present (even if null) or absent.
//	$regex $options  RE2 regular expression on string columns (array columns: any element).
//	                 Options: i (case-insensitive), m (multi-line), s (dot matches newline),
//	                 x (extended: unescaped whitespace and #-comments outside classes are dropped).
//	                 \uXXXX escapes are accepted. The "does not contain" idiom ^((?!X).)*$ is
//	                 evaluated without lookahead; any other lookaround or backreference is rejected.
//	$and $or $nor    (top level or nested) lists of where documents.
//
// Not supported (rejected with ErrInvalid): geo operators, $not, $select/$dontSelect, $inQuery,
// $relatedTo, $text, and dot paths that fan out over arrays of objects (Mongo's implicit array
// traversal). Work is bounded: see MaxDepth, MaxConditions, MaxListElems and MaxRegexLen.
//
// # Sort
//
// A sort spec is a comma-separated list of keys (dot paths allowed), "-" prefix for descending:
// "-lm", "name,-createdAt". Values of different types order by a fixed type rank: missing < null <
// number < string < date < bool < object < array. Within a rank numbers compare numerically,
// strings lexically (byte order), dates (date objects and strings that parse as RFC 3339) as
// instants, false < true, objects and arrays by their canonical JSON. Missing values therefore
// sort first ascending and last descending. Ties are broken by objectId ascending, so paging with
// skip/limit over an unchanged set is stable.
package query
