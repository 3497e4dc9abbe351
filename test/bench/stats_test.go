package bench

import (
	"math"
	"slices"
	"testing"
)

func TestPercentile(t *testing.T) {
	tests := []struct {
		name   string
		values []float64
		p      float64
		want   float64
	}{
		{"single", []float64{7}, 50, 7},
		{"odd median", []float64{3, 1, 2}, 50, 2},
		{"even median", []float64{4, 1, 3, 2}, 50, 2.5},
		{"min", []float64{5, 1, 9}, 0, 1},
		{"max", []float64{5, 1, 9}, 100, 9},
		{"below range", []float64{5, 1, 9}, -3, 1},
		{"above range", []float64{5, 1, 9}, 130, 9},
		{"p90 interpolated", []float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, 90, 9.1},
		{"p99 of 1..100", seq(100), 99, 99.01},
		{"p99.9 of 1..1000", seq(1000), 99.9, 999.001},
		{"p25", []float64{10, 20, 30, 40, 50}, 25, 20},
		{"duplicates", []float64{2, 2, 2, 2}, 75, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := slices.Clone(tt.values)
			got := Percentile(tt.values, tt.p)
			if math.Abs(got-tt.want) > 1e-9 {
				t.Errorf("Percentile(%v, %g) = %v, want %v", tt.values, tt.p, got, tt.want)
			}
			if !slices.Equal(in, tt.values) {
				t.Errorf("input modified: %v", tt.values)
			}
		})
	}
	if v := Percentile(nil, 50); !math.IsNaN(v) {
		t.Errorf("Percentile(nil) = %v, want NaN", v)
	}
}

func TestSummarize(t *testing.T) {
	tests := []struct {
		name   string
		values []float64
		want   Stat
	}{
		{"none", nil, Stat{}},
		{"one", []float64{0.25}, Stat{N: 1, Median: 0.25, Min: 0.25, Max: 0.25, Sum: 0.25}},
		{"three repetitions", []float64{0.31, 0.29, 0.40}, Stat{N: 3, Median: 0.31, Min: 0.29, Max: 0.40, Sum: 1.0}},
		{"two", []float64{1000, 990}, Stat{N: 2, Median: 995, Min: 990, Max: 1000, Sum: 1990}},
		{"errors", []float64{0, 3, 0}, Stat{N: 3, Median: 0, Min: 0, Max: 3, Sum: 3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Summarize(tt.values)
			if got.N != tt.want.N || !approx(got.Median, tt.want.Median) || !approx(got.Min, tt.want.Min) ||
				!approx(got.Max, tt.want.Max) || !approx(got.Sum, tt.want.Sum) {
				t.Errorf("Summarize(%v) = %+v, want %+v", tt.values, got, tt.want)
			}
			if Median(tt.values) != got.Median && len(tt.values) > 0 {
				t.Errorf("Median = %v, Summarize median %v", Median(tt.values), got.Median)
			}
		})
	}
}

func seq(n int) []float64 {
	s := make([]float64, n)
	for i := range s {
		s[i] = float64(i + 1)
	}
	return s
}
