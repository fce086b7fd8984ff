package agent

import (
	"testing"
	"time"
)

func TestTimelineCheck(t *testing.T) {
	tests := []struct {
		name          string
		age           time.Duration // since the check; 0: never checked
		checked       uint32
		known         uint32
		newer, wantOK bool
	}{
		{name: "never checked", known: 3},
		{name: "fresh, same timeline", age: time.Second, checked: 3, known: 3, newer: false, wantOK: true},
		{name: "fresh, says newer", age: time.Second, checked: 3, known: 3, newer: true, wantOK: true},
		{name: "fresh, checked a later timeline than pg_wal knows", age: time.Second, checked: 4, known: 3, wantOK: true},
		{name: "fresh, but the node moved to a new timeline since", age: time.Second, checked: 3, known: 4},
		{name: "too old", age: timelineCheckFresh + time.Second, checked: 3, known: 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c timelineCheck
			if tt.age > 0 {
				c.set(tt.checked, tt.newer)
				c.at = time.Now().Add(-tt.age)
			}
			newer, ok := c.get(tt.known)
			if ok != tt.wantOK || (ok && newer != tt.newer) {
				t.Errorf("get(%d) = %v, %v; want %v, %v", tt.known, newer, ok, tt.newer, tt.wantOK)
			}
		})
	}
}
