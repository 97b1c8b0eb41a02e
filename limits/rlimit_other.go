//go:build !unix

package limits

// SuggestedMaxConns returns 0 (no cap) where the descriptor limit cannot be
// read.
func SuggestedMaxConns() int { return 0 }
