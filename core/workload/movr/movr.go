// Package movr is the demo dataset of the reference cluster: a ride-sharing
// company's users, vehicles, rides and promo codes, spread over nine cities
// in three regions.
//
// The package is independent of the cluster. It knows the schema, how rows
// are keyed, where ranges should split so that each city's rows live in
// ranges of their own, and which region a key belongs to; it writes through
// the one-method KV interface, which the cluster implements.
//
// Rows are generated deterministically: each row is a function of the seed,
// its table and its index, so the same Config loads the same bytes however
// many goroutines write them. Keys use core/keys: a per-city table's row is
// TablePrefix(id) + AppendString(city) + AppendUint(id); a promo code's is
// TablePrefix(id) + AppendString(code). Values are JSON objects of the
// non-key columns, padded with a "pad" column of filler words to a fixed
// size per table (rides about 1 KiB, the others smaller), so Config.Bytes
// controls the data size closely.
package movr

import (
	"bytes"
	"context"
	"slices"

	"github.com/cairnbackup/cairn/core/keys"
)

// Op is one write of a batch: a put of Value at Key, or a delete of Key.
type Op struct {
	Key, Value []byte
	Delete     bool
}

// KV is the store the workload writes to.
//
// Write applies one batch. It may apply it atomically or not; the generator
// never depends on the order within a batch, and never puts the same key
// twice in one batch. Write may keep ops and their slices: the generator does
// not reuse them. It must honour ctx and may be called concurrently.
type KV interface {
	Write(ctx context.Context, ops []Op) error
}

// Regions are the three regions of the reference cluster.
var Regions = []string{"us-east1", "us-west1", "europe-west1"}

// City is a city the rides happen in, and the region its data lives in.
type City struct {
	Name, Region string
}

// Cities are the nine cities, three per region, grouped by region in the
// order of Regions.
var Cities = []City{
	{"new york", "us-east1"},
	{"boston", "us-east1"},
	{"washington dc", "us-east1"},
	{"san francisco", "us-west1"},
	{"seattle", "us-west1"},
	{"los angeles", "us-west1"},
	{"amsterdam", "europe-west1"},
	{"paris", "europe-west1"},
	{"rome", "europe-west1"},
}

// RegionOfCity returns the region of the named city.
func RegionOfCity(name string) (string, bool) {
	for _, c := range Cities {
		if c.Name == name {
			return c.Region, true
		}
	}
	return "", false
}

// Column is a column of a table; Type is an SQL type name, for display.
type Column struct {
	Name, Type string
}

// Table describes one movr table. Its primary-key columns make up a row's
// key, in order; the other columns make up its value. PerCity tables have
// city as their first key column, so their rows split by city.
type Table struct {
	Name       string
	Columns    []Column
	PrimaryKey []string
	PerCity    bool
}

// The tables' positions in Tables; generation derives rows from them, so
// they must not change.
const (
	tUsers = iota
	tVehicles
	tRides
	tPromoCodes
	numTables
)

// Tables are the movr tables, in a fixed order.
var Tables = []Table{
	tUsers: {
		Name: "users",
		Columns: []Column{
			{"city", "STRING"}, {"id", "INT8"}, {"name", "STRING"},
			{"address", "STRING"}, {"credit_card", "STRING"}, {"pad", "STRING"},
		},
		PrimaryKey: []string{"city", "id"},
		PerCity:    true,
	},
	tVehicles: {
		Name: "vehicles",
		Columns: []Column{
			{"city", "STRING"}, {"id", "INT8"}, {"type", "STRING"},
			{"owner_id", "INT8"}, {"creation_time", "TIMESTAMP"}, {"status", "STRING"},
			{"current_location", "STRING"}, {"ext", "JSONB"}, {"pad", "STRING"},
		},
		PrimaryKey: []string{"city", "id"},
		PerCity:    true,
	},
	tRides: {
		Name: "rides",
		Columns: []Column{
			{"city", "STRING"}, {"id", "INT8"}, {"vehicle_city", "STRING"},
			{"rider_id", "INT8"}, {"vehicle_id", "INT8"}, {"start_address", "STRING"},
			{"end_address", "STRING"}, {"start_time", "TIMESTAMP"}, {"end_time", "TIMESTAMP"},
			{"revenue", "DECIMAL(10,2)"}, {"pad", "STRING"},
		},
		PrimaryKey: []string{"city", "id"},
		PerCity:    true,
	},
	tPromoCodes: {
		Name: "promo_codes",
		Columns: []Column{
			{"code", "STRING"}, {"description", "STRING"}, {"creation_time", "TIMESTAMP"},
			{"expiration_time", "TIMESTAMP"}, {"rules", "JSONB"}, {"pad", "STRING"},
		},
		PrimaryKey: []string{"code"},
		PerCity:    false,
	},
}

// SplitPoints returns the keys at which table t, stored under tableID,
// should split into ranges, sorted: for a per-city table the first key of
// each city's rows (TablePrefix + AppendString(city)); for other tables none.
// Every city's rows lie between its split point and the next one (or the
// end of the table span).
func SplitPoints(tableID uint32, t Table) [][]byte {
	if !t.PerCity {
		return nil
	}
	out := make([][]byte, 0, len(Cities))
	for _, c := range Cities {
		out = append(out, cityPrefix(tableID, c.Name))
	}
	slices.SortFunc(out, bytes.Compare)
	return out
}

func cityPrefix(tableID uint32, city string) []byte {
	return keys.AppendString(keys.TablePrefix(tableID), city)
}

// RegionOfKey returns the region of the city a row key or a split key
// belongs to. It reports false for keys that do not decode as a table key
// whose first key column is a known city: promo codes, table prefixes and
// keys of other tables. It does not know which tables are movr's, so any
// table key that starts with a city name maps to that city's region.
func RegionOfKey(key []byte) (region string, ok bool) {
	_, rest, err := keys.DecodeTableID(key)
	if err != nil || len(rest) == 0 {
		return "", false
	}
	vals, err := keys.DecodeTuple(rest)
	if err != nil || len(vals) == 0 {
		return "", false
	}
	city, isString := vals[0].(string)
	if !isString {
		return "", false
	}
	return RegionOfCity(city)
}
