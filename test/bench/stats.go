package bench

import (
	"math"
	"slices"
)

// Percentile returns the p-th percentile (0–100) of values, interpolating linearly between the
// two nearest ranks (the "R-7" definition used by spreadsheets and NumPy). It returns NaN for no
// values. values need not be sorted and are not modified.
func Percentile(values []float64, p float64) float64 {
	if len(values) == 0 {
		return math.NaN()
	}
	s := slices.Clone(values)
	slices.Sort(s)
	return percentileSorted(s, p)
}

func percentileSorted(s []float64, p float64) float64 {
	switch {
	case p <= 0:
		return s[0]
	case p >= 100:
		return s[len(s)-1]
	}
	rank := p / 100 * float64(len(s)-1)
	lo := int(math.Floor(rank))
	hi := min(lo+1, len(s)-1)
	return s[lo] + (rank-float64(lo))*(s[hi]-s[lo])
}

// Median returns the median of values (the mean of the two middle values for an even count).
func Median(values []float64) float64 { return Percentile(values, 50) }

// Summarize returns the count, median, min, max and sum of values.
func Summarize(values []float64) Stat {
	if len(values) == 0 {
		return Stat{}
	}
	s := slices.Clone(values)
	slices.Sort(s)
	st := Stat{N: len(s), Median: percentileSorted(s, 50), Min: s[0], Max: s[len(s)-1]}
	for _, v := range s {
		st.Sum += v
	}
	return st
}
