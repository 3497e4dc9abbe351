package bench

import (
	"fmt"

	"github.com/weftmesh/weft/test/apps/bulk/transfer"
)

// ParseBulk reads the JSON report of `bulk send -json` from out, which may be the combined
// output of the command (the one-line summary and JSON logs go to stderr).
func ParseBulk(out []byte) (*transfer.SendReport, error) {
	var r transfer.SendReport
	if err := decodeIndentedJSON(out, &r); err != nil {
		return nil, fmt.Errorf("bulk report: %w", err)
	}
	if len(r.Streams) == 0 {
		return nil, fmt.Errorf("bulk report: no streams")
	}
	return &r, nil
}

// BulkSample converts a bulk report into a Sample. Streams that failed or whose digest did not
// match count as errors.
func BulkSample(r *transfer.SendReport) Sample {
	var errs float64
	for _, s := range r.Streams {
		if s.Error != "" || !s.Match {
			errs++
		}
	}
	return Sample{Gbps: r.Gbps, Bytes: float64(r.Bytes), Errors: errs}
}
