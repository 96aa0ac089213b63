// Package hlc is a hybrid logical clock and its timestamps. Every MVCC key
// version in the reference cluster carries a Timestamp; the clock makes
// timestamps from one node monotonic and lets a node move past timestamps it
// has seen from others.
package hlc

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Timestamp is an HLC timestamp: wall time in nanoseconds since the Unix
// epoch, and a logical counter that orders events within one wall tick.
type Timestamp struct {
	WallTime int64 `json:"wall_time"`
	Logical  int32 `json:"logical,omitempty"`
}

// MaxTimestamp is greater than every timestamp a clock returns.
var MaxTimestamp = Timestamp{WallTime: math.MaxInt64, Logical: math.MaxInt32}

// IsEmpty reports whether t is the zero timestamp.
func (t Timestamp) IsEmpty() bool { return t == Timestamp{} }

// Less reports whether t orders before u.
func (t Timestamp) Less(u Timestamp) bool {
	return t.WallTime < u.WallTime || (t.WallTime == u.WallTime && t.Logical < u.Logical)
}

// LessEq reports whether t orders before or equal to u.
func (t Timestamp) LessEq(u Timestamp) bool { return !u.Less(t) }

// Compare returns -1, 0 or +1.
func (t Timestamp) Compare(u Timestamp) int {
	switch {
	case t.Less(u):
		return -1
	case u.Less(t):
		return 1
	}
	return 0
}

// Next returns the smallest timestamp greater than t.
func (t Timestamp) Next() Timestamp {
	if t.Logical == math.MaxInt32 {
		return Timestamp{WallTime: t.WallTime + 1}
	}
	return Timestamp{WallTime: t.WallTime, Logical: t.Logical + 1}
}

// Forward returns the later of t and u.
func (t Timestamp) Forward(u Timestamp) Timestamp {
	if t.Less(u) {
		return u
	}
	return t
}

// GoTime returns the wall time as a time.Time in UTC.
func (t Timestamp) GoTime() time.Time { return time.Unix(0, t.WallTime).UTC() }

// String formats t as "<wall nanos>.<logical as 10 digits>", the decimal
// form AS OF SYSTEM TIME accepts, e.g. "1732412345000000000.0000000001".
func (t Timestamp) String() string {
	return fmt.Sprintf("%d.%010d", t.WallTime, t.Logical)
}

// Parse reads the form String writes, a plain nanosecond count, or an
// RFC 3339 time.
func Parse(s string) (Timestamp, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return Timestamp{}, fmt.Errorf("parsing timestamp: empty")
	}
	if wall, logical, ok := strings.Cut(s, "."); ok && isDigits(wall) && isDigits(logical) {
		w, err := strconv.ParseInt(wall, 10, 64)
		if err != nil {
			return Timestamp{}, fmt.Errorf("parsing timestamp %q: %w", s, err)
		}
		if len(logical) != 10 {
			return Timestamp{}, fmt.Errorf("parsing timestamp %q: logical part must have 10 digits", s)
		}
		l, err := strconv.ParseInt(logical, 10, 32)
		if err != nil {
			return Timestamp{}, fmt.Errorf("parsing timestamp %q: %w", s, err)
		}
		return Timestamp{WallTime: w, Logical: int32(l)}, nil
	}
	if isDigits(s) {
		w, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return Timestamp{}, fmt.Errorf("parsing timestamp %q: %w", s, err)
		}
		return Timestamp{WallTime: w}, nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02 15:04:05.999999999", "2006-01-02 15:04:05", "2006-01-02"} {
		if tm, err := time.Parse(layout, s); err == nil {
			return Timestamp{WallTime: tm.UnixNano()}, nil
		}
	}
	return Timestamp{}, fmt.Errorf("parsing timestamp %q: want nanoseconds[.logical], or an RFC 3339 time", s)
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// Clock is a hybrid logical clock. It is safe for concurrent use.
type Clock struct {
	physical func() int64
	mu       sync.Mutex
	last     Timestamp
}

// NewClock returns a clock reading the system's wall time.
func NewClock() *Clock { return NewClockWithSource(func() int64 { return time.Now().UnixNano() }) }

// NewClockWithSource returns a clock reading physical time from fn; tests
// use it to control time.
func NewClockWithSource(fn func() int64) *Clock { return &Clock{physical: fn} }

// Now returns a timestamp greater than every one this clock returned or
// was updated with before.
func (c *Clock) Now() Timestamp {
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.physical()
	if p > c.last.WallTime {
		c.last = Timestamp{WallTime: p}
	} else {
		c.last = c.last.Next()
	}
	return c.last
}

// Update moves the clock forward to at least t, so that the next Now is
// greater than t.
func (c *Clock) Update(t Timestamp) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.last = c.last.Forward(t)
}
