package proxy

import (
	"math/rand/v2"
	"strconv"
	"time"
)

// retryAfterValue returns a Retry-After in whole seconds: the hint plus up
// to half of it again at random, so refused clients do not return in step.
func retryAfterValue(hint time.Duration) string {
	if hint < time.Second {
		hint = time.Second
	}
	secs := int64(hint / time.Second)
	secs += rand.Int64N(secs/2 + 1)
	return strconv.FormatInt(secs, 10)
}
