package ca

import "time"

// SetClock sets the clock of root retirement in o.
func SetClock(o *Options, now func() time.Time) { o.now = now }
