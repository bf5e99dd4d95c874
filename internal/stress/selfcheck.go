package stress

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"regexp"
	"strconv"
)

// SelfCheck is the content of announcement id's n-th version in the daemon-level stress tests (e2e, the storm): it
// names its id and n and carries a hash of both, so that a reader can tell a record nobody wrote.
func SelfCheck(id, n uint64) string {
	h := sha256.Sum256([]byte(fmt.Sprintf("%d/%d", id, n)))
	return fmt.Sprintf("id=%d n=%d h=%s", id, n, hex.EncodeToString(h[:4]))
}

var selfCheckRE = regexp.MustCompile(`^id=(\d+) n=(\d+) h=([0-9a-f]{8})$`)

// ParseSelfCheck returns the id and n of a content SelfCheck wrote; ok is false for anything else.
func ParseSelfCheck(content string) (id, n uint64, ok bool) {
	m := selfCheckRE.FindStringSubmatch(content)
	if m == nil {
		return 0, 0, false
	}
	id, _ = strconv.ParseUint(m[1], 10, 64)
	n, _ = strconv.ParseUint(m[2], 10, 64)
	return id, n, SelfCheck(id, n) == content
}
