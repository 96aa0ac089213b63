package cluster

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/cairnbackup/cairn/core/spans"
)

// Prefix is where the reference cluster keeps its control plane in etcd.
const Prefix = "/cairn/"

const (
	nodesPrefix    = Prefix + "nodes/"
	livenessPrefix = Prefix + "liveness/"
	rangesPrefix   = Prefix + "ranges/"
	dbPrefix       = Prefix + "catalog/db/"
	tablePrefix    = Prefix + "catalog/table/"
	usersPrefix    = Prefix + "users/"
	descIDKey      = Prefix + "catalog/next-id"
	rangeIDKey     = Prefix + "ranges-next-id"
)

// Sentinel errors of the control plane.
var (
	ErrNotFound      = errors.New("not found")
	ErrAlreadyExists = errors.New("already exists")
)

// NodeDesc is a node's record in etcd.
type NodeDesc struct {
	ID            int32  `json:"id"`
	Addr          string `json:"addr"`
	Locality      string `json:"locality"`
	ExternalIODir string `json:"external_io_dir"`
}

// RangeDesc describes one range: its span, its replicas and which of them
// holds the lease.
type RangeDesc struct {
	RangeID     int64   `json:"range_id"`
	Start       []byte  `json:"start"`
	End         []byte  `json:"end"`
	Replicas    []int32 `json:"replicas"`
	Leaseholder int32   `json:"leaseholder"`
}

// Span returns the range's span.
func (r RangeDesc) Span() spans.Span { return spans.Span{Key: r.Start, EndKey: r.End} }

// Descriptor states.
const (
	StatePublic  = "public"
	StateAdding  = "adding" // being restored: invisible to backups and users
	StateDropped = "dropped"
)

// DatabaseDesc is a database in the catalog.
type DatabaseDesc struct {
	ID    uint32 `json:"id"`
	Name  string `json:"name"`
	State string `json:"state"`
}

// Column is a column of a table.
type Column struct {
	Name string `json:"name"`
	Type string `json:"type"`
}

// TableDesc is a table in the catalog. SplitKeys are the keys, after the
// table prefix, where its ranges split; restore re-creates them.
type TableDesc struct {
	ID         uint32   `json:"id"`
	ParentID   uint32   `json:"parent_id"`
	Name       string   `json:"name"`
	Columns    []Column `json:"columns"`
	PrimaryKey []string `json:"primary_key"`
	SplitKeys  [][]byte `json:"split_keys,omitempty"`
	State      string   `json:"state"`
}

// User is a user and the privileges granted to it. root holds every
// privilege and needs no record.
type User struct {
	Name       string   `json:"name"`
	Privileges []string `json:"privileges"`
}

// Privileges.
const (
	PrivBackup  = "BACKUP"
	PrivRestore = "RESTORE"
	RootUser    = "root"
)

// Meta reads and writes the control plane.
type Meta struct {
	cli *clientv3.Client
}

// NewMeta wraps an etcd client.
func NewMeta(cli *clientv3.Client) *Meta { return &Meta{cli: cli} }

// Client returns the etcd client.
func (m *Meta) Client() *clientv3.Client { return m.cli }

func nodeKey(id int32) string      { return nodesPrefix + fmt.Sprintf("%010d", id) }
func livenessKey(id int32) string  { return livenessPrefix + fmt.Sprintf("%010d", id) }
func rangeKey(start []byte) string { return rangesPrefix + hex.EncodeToString(start) }
func dbKey(name string) string     { return dbPrefix + name }
func tableKey(id uint32) string    { return tablePrefix + fmt.Sprintf("%010d", id) }
func userKey(name string) string   { return usersPrefix + name }

func getJSON(ctx context.Context, cli *clientv3.Client, key string, v any) error {
	resp, err := cli.Get(ctx, key)
	if err != nil {
		return err
	}
	if len(resp.Kvs) == 0 {
		return ErrNotFound
	}
	return json.Unmarshal(resp.Kvs[0].Value, v)
}

// listJSON reads every key under prefix in pages.
func listJSON[T any](ctx context.Context, cli *clientv3.Client, prefix string) ([]T, error) {
	var out []T
	key := prefix
	end := clientv3.GetPrefixRangeEnd(prefix)
	for {
		resp, err := cli.Get(ctx, key, clientv3.WithRange(end), clientv3.WithLimit(500))
		if err != nil {
			return nil, err
		}
		for _, kv := range resp.Kvs {
			var v T
			if err := json.Unmarshal(kv.Value, &v); err != nil {
				return nil, fmt.Errorf("decoding %s: %w", kv.Key, err)
			}
			out = append(out, v)
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return out, nil
		}
		key = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}

// PutNode records a node.
func (m *Meta) PutNode(ctx context.Context, n NodeDesc) error {
	b, _ := json.Marshal(n)
	_, err := m.cli.Put(ctx, nodeKey(n.ID), string(b))
	return err
}

// Nodes lists every node ever recorded, by id.
func (m *Meta) Nodes(ctx context.Context) ([]NodeDesc, error) {
	return listJSON[NodeDesc](ctx, m.cli, nodesPrefix)
}

// Node returns one node's record.
func (m *Meta) Node(ctx context.Context, id int32) (NodeDesc, error) {
	var n NodeDesc
	if err := getJSON(ctx, m.cli, nodeKey(id), &n); err != nil {
		return n, fmt.Errorf("reading node %d: %w", id, err)
	}
	return n, nil
}

// LiveNodes returns the ids of nodes whose liveness key exists.
func (m *Meta) LiveNodes(ctx context.Context) (map[int32]bool, error) {
	resp, err := m.cli.Get(ctx, livenessPrefix, clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return nil, err
	}
	live := map[int32]bool{}
	for _, kv := range resp.Kvs {
		id, err := strconv.Atoi(string(kv.Key[len(livenessPrefix):]))
		if err == nil {
			live[int32(id)] = true
		}
	}
	return live, nil
}

// Ranges lists every range in key order.
func (m *Meta) Ranges(ctx context.Context) ([]RangeDesc, error) {
	rs, err := listJSON[RangeDesc](ctx, m.cli, rangesPrefix)
	if err != nil {
		return nil, err
	}
	sort.Slice(rs, func(i, j int) bool { return string(rs[i].Start) < string(rs[j].Start) })
	return rs, nil
}

// Databases lists the catalog's databases.
func (m *Meta) Databases(ctx context.Context) ([]DatabaseDesc, error) {
	return listJSON[DatabaseDesc](ctx, m.cli, dbPrefix)
}

// Database returns a database by name; ErrNotFound if missing or dropped.
func (m *Meta) Database(ctx context.Context, name string) (DatabaseDesc, error) {
	var d DatabaseDesc
	if err := getJSON(ctx, m.cli, dbKey(name), &d); err != nil {
		return d, fmt.Errorf("database %q: %w", name, err)
	}
	return d, nil
}

// Tables lists every table, by id.
func (m *Meta) Tables(ctx context.Context) ([]TableDesc, error) {
	return listJSON[TableDesc](ctx, m.cli, tablePrefix)
}

// TablesOf lists the tables of database id.
func (m *Meta) TablesOf(ctx context.Context, dbID uint32) ([]TableDesc, error) {
	all, err := m.Tables(ctx)
	if err != nil {
		return nil, err
	}
	var out []TableDesc
	for _, t := range all {
		if t.ParentID == dbID {
			out = append(out, t)
		}
	}
	return out, nil
}

// Table returns a table by id.
func (m *Meta) Table(ctx context.Context, id uint32) (TableDesc, error) {
	var t TableDesc
	if err := getJSON(ctx, m.cli, tableKey(id), &t); err != nil {
		return t, fmt.Errorf("table %d: %w", id, err)
	}
	return t, nil
}

// PutUser creates or replaces a user.
func (m *Meta) PutUser(ctx context.Context, u User) error {
	b, _ := json.Marshal(u)
	_, err := m.cli.Put(ctx, userKey(u.Name), string(b))
	return err
}

// HasPrivilege reports whether user holds priv. root holds every one.
func (m *Meta) HasPrivilege(ctx context.Context, user, priv string) (bool, error) {
	if user == RootUser {
		return true, nil
	}
	var u User
	if err := getJSON(ctx, m.cli, userKey(user), &u); err != nil {
		if errors.Is(err, ErrNotFound) {
			return false, nil
		}
		return false, err
	}
	for _, p := range u.Privileges {
		if p == priv || p == "ALL" {
			return true, nil
		}
	}
	return false, nil
}

// nextID allocates n consecutive ids from a counter key and returns the first.
func (m *Meta) nextID(ctx context.Context, key string, n int64, first int64) (int64, error) {
	for {
		resp, err := m.cli.Get(ctx, key)
		if err != nil {
			return 0, err
		}
		cur := first
		var rev int64
		if len(resp.Kvs) > 0 {
			cur, err = strconv.ParseInt(string(resp.Kvs[0].Value), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("reading id counter %s: %w", key, err)
			}
			rev = resp.Kvs[0].ModRevision
		}
		txn, err := m.cli.Txn(ctx).
			If(clientv3.Compare(clientv3.ModRevision(key), "=", rev)).
			Then(clientv3.OpPut(key, strconv.FormatInt(cur+n, 10))).
			Commit()
		if err != nil {
			return 0, err
		}
		if txn.Succeeded {
			return cur, nil
		}
	}
}

// Grant adds privileges to user, creating the user when needed, and
// returns the user's privileges afterwards. Granting a privilege the user
// holds is a no-op.
func (m *Meta) Grant(ctx context.Context, user string, privs ...string) ([]string, error) {
	if user == "" {
		return nil, fmt.Errorf("granting privileges: empty user name")
	}
	for {
		resp, err := m.cli.Get(ctx, userKey(user))
		if err != nil {
			return nil, fmt.Errorf("granting privileges to %s: %w", user, err)
		}
		u := User{Name: user}
		var rev int64
		if len(resp.Kvs) > 0 {
			if err := json.Unmarshal(resp.Kvs[0].Value, &u); err != nil {
				return nil, fmt.Errorf("decoding user %s: %w", user, err)
			}
			rev = resp.Kvs[0].ModRevision
		}
		for _, p := range privs {
			found := false
			for _, q := range u.Privileges {
				found = found || q == p
			}
			if !found {
				u.Privileges = append(u.Privileges, p)
			}
		}
		sort.Strings(u.Privileges)
		b, _ := json.Marshal(u)
		txn, err := m.cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(userKey(user)), "=", rev)).
			Then(clientv3.OpPut(userKey(user), string(b))).Commit()
		if err != nil {
			return nil, fmt.Errorf("granting privileges to %s: %w", user, err)
		}
		if txn.Succeeded {
			return u.Privileges, nil
		}
	}
}
