package movr

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/cairnbackup/cairn/core/keys"
)

// valueSize is the length every value of a table is padded to.
var valueSize = [numTables]int{
	tUsers:      256,
	tVehicles:   320,
	tRides:      1024,
	tPromoCodes: 384,
}

// rowWeight is each table's share of the rows; rides, the largest rows,
// take the bulk of the bytes (about 90%).
var rowWeight = [numTables]int64{
	tUsers:      10,
	tVehicles:   3,
	tRides:      40,
	tPromoCodes: 2,
}

// generator derives rows from (seed, table, index, version). counts are the
// loaded row counts: they fix which city a loaded index belongs to and the
// ids that rides and vehicles refer to.
type generator struct {
	seed   int64
	counts [numTables]int64
	ids    [numTables]uint32
	base   time.Time
}

func newGenerator(seed int64, counts [numTables]int64, ids [numTables]uint32) *generator {
	day := int(uint64(mix(uint64(seed))) % 365)
	return &generator{
		seed:   seed,
		counts: counts,
		ids:    ids,
		base:   time.Date(2024, time.January, 1, 0, 0, 0, 0, time.UTC).AddDate(0, 0, day),
	}
}

// mix is the splitmix64 finaliser: a bijective scrambling of x.
func mix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// rng returns the random stream of one version of one row.
func (g *generator) rng(t int, index int64, version uint64) *rand.Rand {
	s := mix(mix(mix(uint64(t)+1)^uint64(index)) ^ version)
	return rand.New(rand.NewPCG(uint64(g.seed), s))
}

// cityRange returns the indexes [lo, hi) of n loaded rows that belong to
// Cities[c]: each city gets a contiguous block, so its ids ascend in key
// order and a load batch stays within one city's range.
func cityRange(c int, n int64) (lo, hi int64) {
	return int64(c) * n / int64(len(Cities)), int64(c+1) * n / int64(len(Cities))
}

// cityOf returns the position in Cities of row index of table t. Loaded
// rows follow cityRange; rows inserted later get a city from a hash.
func (g *generator) cityOf(t int, index int64) int {
	nc := int64(len(Cities))
	if n := g.counts[t]; index >= 0 && index < n {
		// The largest c with c*n/nc <= index.
		return int((nc*(index+1) - 1) / n)
	}
	return int(mix(uint64(g.seed)^mix(uint64(index)^uint64(t)<<56)) % uint64(nc))
}

// key returns the key of row index of table t.
func (g *generator) key(t int, index int64) []byte {
	if !Tables[t].PerCity {
		return keys.AppendString(keys.TablePrefix(g.ids[t]), g.promoCode(index))
	}
	return keys.AppendUint(cityPrefix(g.ids[t], Cities[g.cityOf(t, index)].Name), uint64(index))
}

// row returns a put of version version of row index of table t.
func (g *generator) row(t int, index int64, version uint64) Op {
	rng := g.rng(t, index, version)
	var v any
	switch t {
	case tUsers:
		v = userRow{
			Name:       pick(rng, firstNames) + " " + pick(rng, lastNames),
			Address:    address(rng),
			CreditCard: fmt.Sprintf("%04d %04d %04d %04d", rng.IntN(10000), rng.IntN(10000), rng.IntN(10000), rng.IntN(10000)),
		}
	case tVehicles:
		c := g.cityOf(t, index)
		v = vehicleRow{
			Type:            pick(rng, vehicleTypes),
			OwnerID:         g.refInCity(rng, tUsers, c),
			CreationTime:    stamp(g.base.Add(-time.Duration(rng.Int64N(int64(365 * 24 * time.Hour))))),
			Status:          pick(rng, vehicleStatuses),
			CurrentLocation: address(rng),
			Ext:             vehicleExt{Color: pick(rng, colors), Brand: pick(rng, brands)},
		}
	case tRides:
		c := g.cityOf(t, index)
		start := g.base.Add(time.Duration(rng.Int64N(int64(30 * 24 * time.Hour)))).Truncate(time.Second)
		minutes := 2 + rng.Int64N(59)
		cents := minutes*35 + 100 + rng.Int64N(300)
		v = rideRow{
			VehicleCity:  Cities[c].Name,
			RiderID:      g.refInCity(rng, tUsers, c),
			VehicleID:    g.refInCity(rng, tVehicles, c),
			StartAddress: address(rng),
			EndAddress:   address(rng),
			StartTime:    stamp(start),
			EndTime:      stamp(start.Add(time.Duration(minutes)*time.Minute + time.Duration(rng.IntN(60))*time.Second)),
			Revenue:      json.Number(strconv.FormatInt(cents/100, 10) + "." + fmt.Sprintf("%02d", cents%100)),
		}
	case tPromoCodes:
		created := g.base.Add(-time.Duration(rng.Int64N(int64(90 * 24 * time.Hour)))).Truncate(time.Second)
		v = promoRow{
			Description:    fillerWords(rng, 60+rng.IntN(80)),
			CreationTime:   stamp(created),
			ExpirationTime: stamp(created.Add(time.Duration(7+rng.IntN(60)) * 24 * time.Hour)),
			Rules:          promoRules{Type: "percent_discount", Value: strconv.Itoa(5+5*rng.IntN(10)) + "%"},
		}
	}
	return Op{Key: g.key(t, index), Value: pad(rng, v, valueSize[t])}
}

// refInCity returns the id of a loaded row of table t in city c, or 0 when
// the city has none.
func (g *generator) refInCity(rng *rand.Rand, t, c int) uint64 {
	lo, hi := cityRange(c, g.counts[t])
	if hi <= lo {
		return 0
	}
	return uint64(lo + rng.Int64N(hi-lo))
}

// promoCode returns the code of promo code index: a few words and the index
// in base 36, so codes are unique. It does not depend on the row's version.
func (g *generator) promoCode(index int64) string {
	h := mix(uint64(g.seed) ^ mix(uint64(index)^0x70726f6d6f))
	a := promoWords[h%uint64(len(promoWords))]
	b := promoWords[(h>>16)%uint64(len(promoWords))]
	return a + "_" + b + "_" + strconv.FormatInt(index, 36)
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }

func pick(rng *rand.Rand, from []string) string { return from[rng.IntN(len(from))] }

func address(rng *rand.Rand) string {
	return strconv.Itoa(1+rng.IntN(99999)) + " " + pick(rng, streetNames) + " " + pick(rng, streetSuffixes)
}

// fillerWords returns n bytes of lowercase words separated by spaces; it
// needs no JSON escaping and compresses roughly as text does.
func fillerWords(rng *rand.Rand, n int) string {
	b := make([]byte, 0, n+16)
	for len(b) < n {
		r := rng.Uint64()
		for i := 0; i < 10 && len(b) < n; i++ {
			b = append(b, fillers[r&63]...)
			b = append(b, ' ')
			r >>= 6
		}
	}
	return string(b[:n])
}

// pad marshals v, a struct of the non-key columns, and appends a "pad"
// column of filler so the result is size bytes long (or longer, if v alone
// is).
func pad(rng *rand.Rand, v any, size int) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		// The row structs hold only strings and numbers.
		panic(fmt.Sprintf("encoding movr row: %v", err))
	}
	const frame = len(`,"pad":""`)
	n := size - len(b) - frame
	if n <= 0 {
		return b
	}
	out := make([]byte, 0, size)
	out = append(out, b[:len(b)-1]...)
	out = append(out, `,"pad":"`...)
	out = append(out, fillerWords(rng, n)...)
	return append(out, `"}`...)
}

type userRow struct {
	Name       string `json:"name"`
	Address    string `json:"address"`
	CreditCard string `json:"credit_card"`
}

type vehicleExt struct {
	Color string `json:"color"`
	Brand string `json:"brand"`
}

type vehicleRow struct {
	Type            string     `json:"type"`
	OwnerID         uint64     `json:"owner_id"`
	CreationTime    string     `json:"creation_time"`
	Status          string     `json:"status"`
	CurrentLocation string     `json:"current_location"`
	Ext             vehicleExt `json:"ext"`
}

type rideRow struct {
	VehicleCity  string      `json:"vehicle_city"`
	RiderID      uint64      `json:"rider_id"`
	VehicleID    uint64      `json:"vehicle_id"`
	StartAddress string      `json:"start_address"`
	EndAddress   string      `json:"end_address"`
	StartTime    string      `json:"start_time"`
	EndTime      string      `json:"end_time"`
	Revenue      json.Number `json:"revenue"`
}

type promoRules struct {
	Type  string `json:"type"`
	Value string `json:"value"`
}

type promoRow struct {
	Description    string     `json:"description"`
	CreationTime   string     `json:"creation_time"`
	ExpirationTime string     `json:"expiration_time"`
	Rules          promoRules `json:"rules"`
}

var (
	firstNames = []string{
		"Ada", "Bruno", "Chen", "Dalia", "Emil", "Fatima", "Giulia", "Hugo", "Ines", "Jonas",
		"Keiko", "Lars", "Maya", "Nikhil", "Olga", "Pablo", "Quinn", "Rosa", "Sami", "Tomas",
		"Uma", "Victor", "Wen", "Yara", "Zoe",
	}
	lastNames = []string{
		"Abbott", "Bianchi", "Castillo", "Dubois", "Eriksen", "Fischer", "Garcia", "Hughes",
		"Ito", "Jansen", "Kowalski", "Lopez", "Moreau", "Nguyen", "Okafor", "Petrov", "Rossi",
		"Schmidt", "Tanaka", "Usman", "Visser", "Walsh", "Young", "Zhang",
	}
	streetNames = []string{
		"Oak", "Maple", "Cedar", "Pine", "Elm", "Harbor", "Mill", "Church", "Market", "Canal",
		"River", "Hill", "Park", "Lake", "Station", "Garden", "Bridge", "Castle", "Meadow", "Forest",
	}
	streetSuffixes  = []string{"Street", "Avenue", "Road", "Lane", "Boulevard", "Way", "Court", "Place"}
	vehicleTypes    = []string{"scooter", "bike", "skateboard"}
	vehicleStatuses = []string{"available", "in_use", "lost"}
	colors          = []string{"red", "blue", "green", "yellow", "black", "white", "orange"}
	brands          = []string{"Lime", "Bird", "Voi", "Tier", "Spin", "Jump", "Dott"}
	promoWords      = []string{
		"summer", "winter", "spring", "autumn", "free", "ride", "fast", "city", "weekend", "night",
		"early", "bird", "happy", "hour", "lucky", "bonus", "first", "trip", "green", "zoom",
	}
	// fillers holds exactly 64 words, indexed by six random bits.
	fillers = [64]string{
		"lorem", "ipsum", "dolor", "sit", "amet", "consectetur", "adipiscing", "elit",
		"sed", "do", "eiusmod", "tempor", "incididunt", "ut", "labore", "et",
		"dolore", "magna", "aliqua", "enim", "ad", "minim", "veniam", "quis",
		"nostrud", "exercitation", "ullamco", "laboris", "nisi", "aliquip", "ex", "ea",
		"commodo", "consequat", "duis", "aute", "irure", "in", "reprehenderit", "voluptate",
		"velit", "esse", "cillum", "eu", "fugiat", "nulla", "pariatur", "excepteur",
		"sint", "occaecat", "cupidatat", "non", "proident", "sunt", "culpa", "qui",
		"officia", "deserunt", "mollit", "anim", "id", "est", "laborum", "ride",
	}
)
