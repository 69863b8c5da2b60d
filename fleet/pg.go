package fleet

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

//go:embed migrations/*.sql
var migrations embed.FS

// migrationLock is the advisory lock monitors take while they migrate, so
// that two starting at once do not both apply a migration.
const migrationLock = 0x636f6e73656e74 // "consent"

// Migrate applies the schema migrations (migrations/NNNN_name.sql) not yet
// applied, each in its own transaction, in order.
func Migrate(ctx context.Context, pool *pgxpool.Pool) error {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", migrationLock); err != nil {
		return fmt.Errorf("migrate: lock: %w", err)
	}
	defer conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", migrationLock)
	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	names, err := fs.Glob(migrations, "migrations/*.sql")
	if err != nil {
		return err
	}
	slices.Sort(names)
	for _, name := range names {
		base := path.Base(name)
		num, _, _ := strings.Cut(base, "_")
		version, err := strconv.Atoi(num)
		if err != nil {
			return fmt.Errorf("migrate: %s: not NNNN_name.sql", base)
		}
		var done bool
		if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE version = $1)", version).Scan(&done); err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
		if done {
			continue
		}
		sql, err := migrations.ReadFile(name)
		if err != nil {
			return err
		}
		err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, string(sql)); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", version, base)
			return err
		})
		if err != nil {
			return fmt.Errorf("migrate: %s: %w", base, err)
		}
	}
	return nil
}

// boxRow is a box as PostgreSQL keeps it.
type boxRow struct {
	id             int32
	site, camera   string
	verified       uint64
	rangeHashes    []byte
	checkpoint     []byte
	checkpointSize uint64
	checkpointAt   time.Time
	available      string
	availableAt    time.Time
}

func loadBoxes(ctx context.Context, pool *pgxpool.Pool) ([]boxRow, error) {
	rows, err := pool.Query(ctx, `SELECT id, site, camera, verified, range_hashes, checkpoint,
		coalesce(checkpoint_size, 0), coalesce(checkpoint_at, 'epoch'), available, coalesce(available_at, 'epoch')
		FROM boxes ORDER BY id`)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (boxRow, error) {
		var b boxRow
		var verified, size int64
		err := r.Scan(&b.id, &b.site, &b.camera, &verified, &b.rangeHashes, &b.checkpoint, &size, &b.checkpointAt, &b.available, &b.availableAt)
		b.verified, b.checkpointSize = uint64(verified), uint64(size)
		return b, err
	})
}

// insertBox returns the id of a box, adding it when new.
func insertBox(ctx context.Context, pool *pgxpool.Pool, site, camera string) (int32, error) {
	var id int32
	err := pool.QueryRow(ctx, `INSERT INTO boxes (site, camera) VALUES ($1, $2)
		ON CONFLICT (site, camera) DO UPDATE SET site = excluded.site RETURNING id`, site, camera).Scan(&id)
	return id, err
}

// eventsFrom streams a box's stored events with from <= seq < to, in
// order, to fn.
func eventsFrom(ctx context.Context, pool *pgxpool.Pool, box int32, from, to uint64, fn func(seq uint64, body []byte) error) error {
	rows, err := pool.Query(ctx, "SELECT seq, body FROM events WHERE box = $1 AND seq >= $2 AND seq < $3 ORDER BY seq",
		box, int64(from), int64(min(to, 1<<62)))
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var seq int64
		var body []byte
		if err := rows.Scan(&seq, &body); err != nil {
			return err
		}
		if err := fn(uint64(seq), body); err != nil {
			return err
		}
	}
	return rows.Err()
}

// activeAlarm is an alarm raised and not cleared, as stored.
type activeAlarm struct {
	site, camera, kind, key string
	message, sha            string
	count                   int64
	raised, last            time.Time
}

func loadAlarms(ctx context.Context, pool *pgxpool.Pool) ([]activeAlarm, error) {
	rows, err := pool.Query(ctx, `SELECT site, camera, kind, key, message, payload_sha256, count, raised_at, last_at
		FROM alarms WHERE cleared_at IS NULL`)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (activeAlarm, error) {
		var a activeAlarm
		err := r.Scan(&a.site, &a.camera, &a.kind, &a.key, &a.message, &a.sha, &a.count, &a.raised, &a.last)
		return a, err
	})
}

// batch is what one worker writes in one transaction: everything that the
// messages it acknowledges next changed.
type batch struct {
	evBox   []int32
	evSeq   []int64
	evBody  [][]byte
	updates map[int32]*boxUpdate
	cps     []checkpointRow
	notices []noticeRow
	alarms  []alarmChange
	rejects []rejectRow
}

type boxUpdate struct {
	verified       *uint64
	rangeHashes    []byte
	checkpoint     []byte
	checkpointSize uint64
	checkpointAt   time.Time
	available      string
	availableAt    time.Time
}

type checkpointRow struct {
	box  int32
	size uint64
	root []byte
	note []byte
	at   time.Time
}

type noticeRow struct {
	box  int32
	hash string
	body []byte
}

type alarmChange struct {
	clear bool
	activeAlarm
}

type rejectRow struct {
	site, camera, topic, reason, sha string
	size                             int
	at                               time.Time
}

func (b *batch) empty() bool {
	return len(b.evBox) == 0 && len(b.updates) == 0 && len(b.cps) == 0 && len(b.notices) == 0 &&
		len(b.alarms) == 0 && len(b.rejects) == 0
}

func (b *batch) update(box int32) *boxUpdate {
	if b.updates == nil {
		b.updates = map[int32]*boxUpdate{}
	}
	u := b.updates[box]
	if u == nil {
		u = &boxUpdate{}
		b.updates[box] = u
	}
	return u
}

func (b *batch) event(box int32, seq uint64, body []byte) {
	b.evBox = append(b.evBox, box)
	b.evSeq = append(b.evSeq, int64(seq))
	b.evBody = append(b.evBody, body)
}

func (b *batch) reset() { *b = batch{} }

// commit writes the batch in one transaction.
func (b *batch) commit(ctx context.Context, pool *pgxpool.Pool) error {
	return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		var q pgx.Batch
		if len(b.evBox) > 0 {
			q.Queue(`INSERT INTO events (box, seq, body) SELECT * FROM unnest($1::integer[], $2::bigint[], $3::bytea[])
				ON CONFLICT DO NOTHING`, b.evBox, b.evSeq, b.evBody)
		}
		for _, c := range b.cps {
			q.Queue(`INSERT INTO checkpoints (box, size, root, note, received_at) VALUES ($1, $2, $3, $4, $5)
				ON CONFLICT (box, size) DO NOTHING`, c.box, int64(c.size), c.root, c.note, c.at)
		}
		for id, u := range b.updates {
			if u.verified != nil {
				q.Queue("UPDATE boxes SET verified = $2, range_hashes = $3 WHERE id = $1", id, int64(*u.verified), u.rangeHashes)
			}
			if u.checkpoint != nil {
				q.Queue("UPDATE boxes SET checkpoint = $2, checkpoint_size = $3, checkpoint_at = $4 WHERE id = $1",
					id, u.checkpoint, int64(u.checkpointSize), u.checkpointAt)
			}
			if u.available != "" {
				q.Queue("UPDATE boxes SET available = $2, available_at = $3 WHERE id = $1", id, u.available, u.availableAt)
			}
		}
		for _, n := range b.notices {
			q.Queue("INSERT INTO notices (box, hash, body) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING", n.box, n.hash, n.body)
		}
		for _, a := range b.alarms {
			if a.clear {
				q.Queue(`UPDATE alarms SET cleared_at = $5 WHERE site = $1 AND camera = $2 AND kind = $3 AND key = $4
					AND cleared_at IS NULL`, a.site, a.camera, a.kind, a.key, a.last)
				continue
			}
			q.Queue(`INSERT INTO alarms (site, camera, kind, key, message, payload_sha256, count, raised_at, last_at)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
				ON CONFLICT (site, camera, kind, key) WHERE cleared_at IS NULL
				DO UPDATE SET message = excluded.message, payload_sha256 = excluded.payload_sha256,
					count = excluded.count, last_at = excluded.last_at`,
				a.site, a.camera, a.kind, a.key, a.message, a.sha, a.count, a.raised, a.last)
		}
		for _, r := range b.rejects {
			q.Queue(`INSERT INTO rejects (site, camera, topic, reason, payload_sha256, size, at) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
				r.site, r.camera, r.topic, r.reason, r.sha, r.size, r.at)
		}
		if q.Len() == 0 {
			return nil
		}
		return tx.SendBatch(ctx, &q).Close()
	})
}

// checkpointRoot returns the root of a verified checkpoint of a box by
// size, nil when there is none of that size.
func checkpointRoot(ctx context.Context, pool *pgxpool.Pool, box int32, size uint64) ([]byte, error) {
	var root []byte
	err := pool.QueryRow(ctx, "SELECT root FROM checkpoints WHERE box = $1 AND size = $2", box, int64(size)).Scan(&root)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	return root, err
}

// eventBody returns a stored event's bytes, nil when there is none.
func eventBody(ctx context.Context, pool *pgxpool.Pool, box int32, seq uint64) ([]byte, error) {
	var body []byte
	err := pool.QueryRow(ctx, "SELECT body FROM events WHERE box = $1 AND seq = $2", box, int64(seq)).Scan(&body)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	return body, err
}
