package report

import (
	"encoding/json"
	"math"
	"strings"
	"testing"

	"github.com/affgd/affgd/data"
)

type addCall struct {
	class, m string
	s        data.Scores
}

var nan = math.NaN()

// same compares floats exactly, NaN equal to NaN: the means are sums in insertion order divided by
// N, so the test computes the same float64 operations and expects identical bits.
func same(a, b float64) bool {
	return a == b || (math.IsNaN(a) && math.IsNaN(b))
}

func sameFigures(a, b Figures) bool {
	return a.N == b.N && a.NaNNSS == b.NaNNSS && same(a.KLD, b.KLD) && same(a.SIM, b.SIM) &&
		same(a.NSS, b.NSS) && same(a.NSSFinite, b.NSSFinite)
}

func TestAccumulatorSummary(t *testing.T) {
	nanFig := Figures{KLD: nan, SIM: nan, NSS: nan, NSSFinite: nan}
	tests := []struct {
		name        string
		maps        []string
		order       []string // SetClassOrder, when not nil
		adds        []addCall
		overall     map[string]Figures
		perClass    map[string]map[string]Figures
		classes     []string
		tableHas    []string
		tableHasNot []string
	}{
		{
			name:        "empty",
			maps:        []string{"cam", "ree", "rem"},
			overall:     map[string]Figures{"cam": nanFig, "ree": nanFig, "rem": nanFig},
			perClass:    map[string]map[string]Figures{},
			tableHas:    []string{"no images"},
			tableHasNot: []string{"NaN"},
		},
		{
			name: "plain means",
			maps: []string{"cam", "ree"},
			adds: []addCall{
				{"hold", "cam", data.Scores{KLD: 1, SIM: 0.25, NSS: 2}},
				{"hold", "ree", data.Scores{KLD: 0.5, SIM: 0.5, NSS: 1}},
				{"cut", "cam", data.Scores{KLD: 2, SIM: 0.5, NSS: 1}},
				{"cut", "ree", data.Scores{KLD: 1.5, SIM: 0.25, NSS: 3}},
				{"cut", "cam", data.Scores{KLD: 3, SIM: 0.75, NSS: 0}},
			},
			overall: map[string]Figures{
				"cam": {N: 3, KLD: 2, SIM: 0.5, NSS: 1, NSSFinite: 1},
				"ree": {N: 2, KLD: 1, SIM: 0.375, NSS: 2, NSSFinite: 2},
			},
			perClass: map[string]map[string]Figures{
				"hold": {"cam": {N: 1, KLD: 1, SIM: 0.25, NSS: 2, NSSFinite: 2}, "ree": {N: 1, KLD: 0.5, SIM: 0.5, NSS: 1, NSSFinite: 1}},
				"cut":  {"cam": {N: 2, KLD: 2.5, SIM: 0.625, NSS: 0.5, NSSFinite: 0.5}, "ree": {N: 1, KLD: 1.5, SIM: 0.25, NSS: 3, NSSFinite: 3}},
			},
			classes:     []string{"hold", "cut"},
			tableHas:    []string{"KLD↓", "SIM↑", "NSS↑", "2.000", "0.375", "per class:"},
			tableHasNot: []string{"NaN", "const"},
		},
		{
			name: "NaN NSS counted and excluded from the finite mean",
			maps: []string{"cam", "ree", "rem"},
			adds: []addCall{
				{"hold", "ree", data.Scores{KLD: 1, SIM: 0.5, NSS: nan}},
				{"hold", "ree", data.Scores{KLD: 2, SIM: 0.25, NSS: 1.5}},
				{"open", "ree", data.Scores{KLD: 3, SIM: 0.75, NSS: nan}},
				{"open", "ree", data.Scores{KLD: 2, SIM: 0.5, NSS: 0.5}},
				{"open", "cam", data.Scores{KLD: 1, SIM: 0.5, NSS: 1}},
			},
			overall: map[string]Figures{
				"cam": {N: 1, KLD: 1, SIM: 0.5, NSS: 1, NSSFinite: 1},
				"ree": {N: 4, KLD: 2, SIM: 0.5, NSS: nan, NaNNSS: 2, NSSFinite: 1},
				"rem": nanFig,
			},
			perClass: map[string]map[string]Figures{
				"hold": {"cam": nanFig, "ree": {N: 2, KLD: 1.5, SIM: 0.375, NSS: nan, NaNNSS: 1, NSSFinite: 1.5}, "rem": nanFig},
				"open": {"cam": {N: 1, KLD: 1, SIM: 0.5, NSS: 1, NSSFinite: 1}, "ree": {N: 2, KLD: 2.5, SIM: 0.625, NSS: nan, NaNNSS: 1, NSSFinite: 0.5}, "rem": nanFig},
			},
			classes:  []string{"hold", "open"},
			tableHas: []string{"NaN (2 const; 1.000 w/o)", "NaN (1 const; 1.500 w/o)", "NaN (k const; x w/o):"},
		},
		{
			name: "all NSS NaN",
			maps: []string{"cam"},
			adds: []addCall{
				{"hold", "cam", data.Scores{KLD: 1, SIM: 0.5, NSS: nan}},
			},
			overall:  map[string]Figures{"cam": {N: 1, KLD: 1, SIM: 0.5, NSS: nan, NaNNSS: 1, NSSFinite: nan}},
			perClass: map[string]map[string]Figures{"hold": {"cam": {N: 1, KLD: 1, SIM: 0.5, NSS: nan, NaNNSS: 1, NSSFinite: nan}}},
			classes:  []string{"hold"},
			tableHas: []string{"NaN (1 const; NaN w/o)"},
		},
		{
			name:  "given class order, then first-seen; unused given classes omitted",
			maps:  []string{"cam"},
			order: []string{"beat", "open", "hold", "open"},
			adds: []addCall{
				{"zzz", "cam", data.Scores{KLD: 1, SIM: 1, NSS: 1}},
				{"hold", "cam", data.Scores{KLD: 1, SIM: 1, NSS: 1}},
				{"aaa", "cam", data.Scores{KLD: 1, SIM: 1, NSS: 1}},
				{"open", "cam", data.Scores{KLD: 1, SIM: 1, NSS: 1}},
			},
			overall: map[string]Figures{"cam": {N: 4, KLD: 1, SIM: 1, NSS: 1, NSSFinite: 1}},
			perClass: map[string]map[string]Figures{
				"zzz": {"cam": {N: 1, KLD: 1, SIM: 1, NSS: 1, NSSFinite: 1}}, "hold": {"cam": {N: 1, KLD: 1, SIM: 1, NSS: 1, NSSFinite: 1}},
				"aaa": {"cam": {N: 1, KLD: 1, SIM: 1, NSS: 1, NSSFinite: 1}}, "open": {"cam": {N: 1, KLD: 1, SIM: 1, NSS: 1, NSSFinite: 1}},
			},
			classes: []string{"open", "hold", "zzz", "aaa"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := NewAccumulator(tc.maps...)
			if tc.order != nil {
				a.SetClassOrder(tc.order...)
			}
			for _, c := range tc.adds {
				if err := a.Add(c.class, c.m, c.s); err != nil {
					t.Fatalf("Add(%q, %q): %v", c.class, c.m, err)
				}
			}
			s := a.Summary()
			if strings.Join(s.Maps, ",") != strings.Join(tc.maps, ",") {
				t.Errorf("Maps = %v, want %v", s.Maps, tc.maps)
			}
			if strings.Join(s.Classes, ",") != strings.Join(tc.classes, ",") {
				t.Errorf("Classes = %v, want %v", s.Classes, tc.classes)
			}
			for m, want := range tc.overall {
				if got := s.Overall[m]; !sameFigures(got, want) {
					t.Errorf("Overall[%s] = %+v, want %+v", m, got, want)
				}
			}
			if len(s.PerClass) != len(tc.perClass) {
				t.Errorf("PerClass has %d classes, want %d", len(s.PerClass), len(tc.perClass))
			}
			for c, ms := range tc.perClass {
				for m, want := range ms {
					if got := s.PerClass[c][m]; !sameFigures(got, want) {
						t.Errorf("PerClass[%s][%s] = %+v, want %+v", c, m, got, want)
					}
				}
			}
			table := s.Table(true)
			for _, w := range tc.tableHas {
				if !strings.Contains(table, w) {
					t.Errorf("table lacks %q:\n%s", w, table)
				}
			}
			for _, w := range tc.tableHasNot {
				if strings.Contains(table, w) {
					t.Errorf("table has %q:\n%s", w, table)
				}
			}
			// The JSON must parse (NaN written as null) and carry the same figures.
			b, err := json.Marshal(s)
			if err != nil {
				t.Fatal(err)
			}
			checkJSON(t, b, s)
		})
	}
}

func checkJSON(t *testing.T, b []byte, s Summary) {
	t.Helper()
	var doc struct {
		Maps       map[string]jsonFigures            `json:"maps"`
		PerClass   map[string]map[string]jsonFigures `json:"per_class"`
		MapOrder   []string                          `json:"map_order"`
		ClassOrder []string                          `json:"class_order"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatalf("summary JSON does not parse: %v\n%s", err, b)
	}
	for _, m := range s.Maps {
		if got := doc.Maps[m].figures(); !sameFigures(got, s.Overall[m]) {
			t.Errorf("JSON maps[%s] = %+v, want %+v", m, got, s.Overall[m])
		}
	}
	for _, c := range s.Classes {
		for _, m := range s.Maps {
			if got := doc.PerClass[c][m].figures(); !sameFigures(got, s.PerClass[c][m]) {
				t.Errorf("JSON per_class[%s][%s] = %+v, want %+v", c, m, got, s.PerClass[c][m])
			}
		}
	}
	if strings.Join(doc.MapOrder, ",") != strings.Join(s.Maps, ",") || strings.Join(doc.ClassOrder, ",") != strings.Join(s.Classes, ",") {
		t.Errorf("JSON orders %v %v, want %v %v", doc.MapOrder, doc.ClassOrder, s.Maps, s.Classes)
	}
	// UnmarshalJSON reads it back equal, NaN included.
	var back Summary
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatalf("UnmarshalJSON: %v", err)
	}
	if strings.Join(back.Maps, ",") != strings.Join(s.Maps, ",") || strings.Join(back.Classes, ",") != strings.Join(s.Classes, ",") {
		t.Errorf("read back orders %v %v, want %v %v", back.Maps, back.Classes, s.Maps, s.Classes)
	}
	for _, m := range s.Maps {
		if !sameFigures(back.Overall[m], s.Overall[m]) {
			t.Errorf("read back Overall[%s] = %+v, want %+v", m, back.Overall[m], s.Overall[m])
		}
		for _, c := range s.Classes {
			if !sameFigures(back.PerClass[c][m], s.PerClass[c][m]) {
				t.Errorf("read back PerClass[%s][%s] = %+v, want %+v", c, m, back.PerClass[c][m], s.PerClass[c][m])
			}
		}
	}
	if back.Table(true) != s.Table(true) {
		t.Errorf("read back table differs:\n%s\nwant:\n%s", back.Table(true), s.Table(true))
	}
}

func TestSummaryUnmarshalErrors(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"not an object", `[1]`, "report: summary JSON"},
		{"figures not an object", `{"maps":{"cam":3}}`, "report: summary JSON"},
		{"string mean", `{"maps":{"cam":{"n":1,"kld":"x"}}}`, "report: summary JSON"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var s Summary
			err := json.Unmarshal([]byte(tc.in), &s)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
	var s Summary
	if err := json.Unmarshal([]byte(`{"maps":{"ree":{"n":2,"kld":1,"sim":0.5,"nss":null,"nss_nan":1,"nss_finite":2},"cam":{"n":1}}}`), &s); err != nil {
		t.Fatal(err)
	}
	if strings.Join(s.Maps, ",") != "cam,ree" || !math.IsNaN(s.Overall["ree"].NSS) || s.Overall["ree"].NSSFinite != 2 {
		t.Errorf("without map_order: %+v", s)
	}
}

func TestAccumulatorErrors(t *testing.T) {
	tests := []struct {
		name, class, m string
		want           string
	}{
		{"unknown map", "hold", "xyz", `unknown map "xyz" (this accumulator takes "cam", "ree", "rem")`},
		{"empty map name", "hold", "", `unknown map ""`},
		{"empty class", "", "cam", `empty class name for map "cam"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := NewAccumulator("cam", "ree", "rem")
			err := a.Add(tc.class, tc.m, data.Scores{KLD: 1})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Add(%q, %q) = %v, want an error containing %q", tc.class, tc.m, err, tc.want)
			}
			if s := a.Summary(); s.Overall["cam"].N != 0 || len(s.Classes) != 0 {
				t.Errorf("a refused Add recorded something: %+v", s)
			}
		})
	}
	var nilAcc *Accumulator
	if err := nilAcc.Add("hold", "cam", data.Scores{}); err == nil {
		t.Error("Add on a nil accumulator: no error")
	}
	if s := nilAcc.Summary(); s.Table(false) != "no images\n" {
		t.Errorf("nil accumulator's table = %q", s.Table(false))
	}
}

// TestMeansAreSequentialSums checks the mean is the running sum in insertion order divided by N,
// the reference's sum(list)/len(list), bit for bit, on values whose sum depends on the order.
func TestMeansAreSequentialSums(t *testing.T) {
	vals := []float64{1e16, 1, -1e16, 0.1, 0.2, 0.3, 1.0 / 3}
	a := NewAccumulator("ree")
	var sum float64
	for _, v := range vals {
		if err := a.Add("hold", "ree", data.Scores{KLD: v, SIM: v, NSS: v}); err != nil {
			t.Fatal(err)
		}
		sum += v
	}
	want := sum / float64(len(vals))
	f := a.Summary().Overall["ree"]
	if f.KLD != want || f.SIM != want || f.NSS != want || f.NSSFinite != want {
		t.Errorf("means %+v, want %v each", f, want)
	}
}

func TestTableLayout(t *testing.T) {
	a := NewAccumulator("cam", "ree", "rem")
	a.SetClassOrder("hold")
	for _, m := range []string{"cam", "ree", "rem"} {
		_ = a.Add("hold", m, data.Scores{KLD: 1.1244, SIM: 0.4333, NSS: 1.2801})
	}
	_ = a.Add("hold", "rem", data.Scores{KLD: 1.1244, SIM: 0.4333, NSS: nan})
	got := a.Summary().Table(false)
	want := "" +
		"map  N   KLD↓   SIM↑                      NSS↑\n" +
		"cam  1  1.124  0.433                     1.280\n" +
		"ree  1  1.124  0.433                     1.280\n" +
		"rem  2  1.124  0.433  NaN (1 const; 1.280 w/o)\n" +
		nssFootnote + "\n"
	if got != want {
		t.Errorf("table:\n%s\nwant:\n%s", got, want)
	}
	if strings.Contains(got, "per class") {
		t.Error("Table(false) printed the per-class table")
	}
}

func TestJSONStableAndNull(t *testing.T) {
	a := NewAccumulator("ree", "cam")
	_ = a.Add("open", "ree", data.Scores{KLD: 0.5, SIM: 0.25, NSS: nan})
	_ = a.Add("cut", "ree", data.Scores{KLD: 1.5, SIM: 0.75, NSS: 2})
	b, err := json.Marshal(a.Summary())
	if err != nil {
		t.Fatal(err)
	}
	want := `{"maps":{"ree":{"n":2,"kld":1,"sim":0.5,"nss":null,"nss_nan":1,"nss_finite":2},` +
		`"cam":{"n":0,"kld":null,"sim":null,"nss":null,"nss_nan":0,"nss_finite":null}},` +
		`"per_class":{"open":{"ree":{"n":1,"kld":0.5,"sim":0.25,"nss":null,"nss_nan":1,"nss_finite":null},` +
		`"cam":{"n":0,"kld":null,"sim":null,"nss":null,"nss_nan":0,"nss_finite":null}},` +
		`"cut":{"ree":{"n":1,"kld":1.5,"sim":0.75,"nss":2,"nss_nan":0,"nss_finite":2},` +
		`"cam":{"n":0,"kld":null,"sim":null,"nss":null,"nss_nan":0,"nss_finite":null}}},` +
		`"map_order":["ree","cam"],"class_order":["open","cut"]}`
	if string(b) != want {
		t.Errorf("JSON:\n%s\nwant:\n%s", b, want)
	}
}
