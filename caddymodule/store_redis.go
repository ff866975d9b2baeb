package caddymodule

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/redis/go-redis/v9"

	"github.com/relyingparty/caddy-oidc-auth/internal/store"
)

func init() {
	caddy.RegisterModule(RedisStore{})
}

// RedisStore keeps the shared state in Redis, so that every Caddy instance serving a site
// refuses what any of them saw: replayed codes and tokens, one-time tokens used twice, login
// attempts used twice, a second refresh of one session. Keys expire with what they remember.
type RedisStore struct {
	// The Redis server, as a URL with its password and TLS: redis://[user:password@]host:port/db
	// or rediss:// for TLS. Sentinel: add master_name=NAME (and addr=HOST:PORT for each further
	// sentinel); Cluster: add addr=HOST:PORT for each further node. Timeouts and pool sizes
	// may be set as go-redis query parameters (read_timeout=1s, ...). Required.
	URL string `json:"url,omitempty"`
	// What every key starts with, to share one Redis between sites. Default: oidc_auth.
	Prefix string `json:"prefix,omitempty"`

	client redis.UniversalClient
	pooled string
	sites  []string // the sites' stores this module opened, in redisSites
}

// CaddyModule returns the Caddy module information.
func (RedisStore) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.oidc_auth.stores.redis",
		New: func() caddy.Module { return new(RedisStore) },
	}
}

// Provision connects (lazily: go-redis dials on first use) through a client shared by every
// handler using the same URL.
func (s *RedisStore) Provision(caddy.Context) error {
	s.URL = caddy.NewReplacer().ReplaceKnown(s.URL, "")
	if s.URL == "" {
		return errors.New("the redis store needs a url")
	}
	if s.Prefix == "" {
		s.Prefix = "oidc_auth"
	}
	v, _, err := redisClients.LoadOrNew(s.URL, func() (caddy.Destructor, error) {
		c, err := newRedisClient(s.URL)
		if err != nil {
			return nil, err
		}
		return pooledRedis{c}, nil
	})
	if err != nil {
		// The URL may hold a password: the error names the option, not the value.
		return fmt.Errorf("the redis store's url does not parse: %w", redactURLError(err, s.URL))
	}
	s.client, s.pooled = v.(pooledRedis).UniversalClient, s.URL
	return nil
}

// Cleanup releases this user's share of the client.
func (s *RedisStore) Cleanup() error {
	for _, site := range s.sites {
		_, _ = redisSites.Delete(site)
	}
	s.sites = nil
	if s.pooled == "" {
		return nil
	}
	_, err := redisClients.Delete(s.pooled)
	s.pooled = ""
	return err
}

var redisClients = caddy.NewUsagePool()

type pooledRedis struct{ redis.UniversalClient }

func (p pooledRedis) Destruct() error { return p.Close() }

// newRedisClient reads the URL: master_name makes a Sentinel client, further addr parameters
// a Cluster client, else a single server. Timeouts default to a second or two, so that a
// Redis that does not answer fails a request (503) instead of holding it.
func newRedisClient(raw string) (redis.UniversalClient, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, err
	}
	q := u.Query()
	switch {
	case q.Has("master_name"):
		o, err := redis.ParseFailoverURL(raw)
		if err != nil {
			return nil, err
		}
		o.DialTimeout, o.ReadTimeout, o.WriteTimeout = orDefault(o.DialTimeout, 2*time.Second), orDefault(o.ReadTimeout, time.Second), orDefault(o.WriteTimeout, time.Second)
		return redis.NewFailoverClient(o), nil
	case q.Has("addr"):
		o, err := redis.ParseClusterURL(raw)
		if err != nil {
			return nil, err
		}
		o.DialTimeout, o.ReadTimeout, o.WriteTimeout = orDefault(o.DialTimeout, 2*time.Second), orDefault(o.ReadTimeout, time.Second), orDefault(o.WriteTimeout, time.Second)
		return redis.NewClusterClient(o), nil
	}
	o, err := redis.ParseURL(raw)
	if err != nil {
		return nil, err
	}
	o.DialTimeout, o.ReadTimeout, o.WriteTimeout = orDefault(o.DialTimeout, 2*time.Second), orDefault(o.ReadTimeout, time.Second), orDefault(o.WriteTimeout, time.Second)
	return redis.NewClient(o), nil
}

func orDefault(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

// redactURLError keeps a URL's password out of an error's text.
func redactURLError(err error, raw string) error {
	msg := err.Error()
	if u, perr := url.Parse(raw); perr == nil && u.User != nil {
		if pw, ok := u.User.Password(); ok && pw != "" {
			msg = strings.ReplaceAll(msg, pw, "xxxxx")
		}
	}
	return errors.New(msg)
}

// openStore returns the site's store: one per URL and key in this process, with one
// subscriber keeping its revocations in memory.
func (s *RedisStore) openStore(key string) (store.Store, error) {
	sum := sha256.Sum256([]byte(key))
	// The site's part is a hash tag: with Redis Cluster all of a site's keys share one slot,
	// so its transactions and multi-key reads stay on one node.
	prefix := s.Prefix + ":{" + base64.RawURLEncoding.EncodeToString(sum[:9]) + "}:"
	v, _, err := redisSites.LoadOrNew(s.URL+"\x00"+prefix, func() (caddy.Destructor, error) {
		return newRedisStore(s.client, prefix), nil
	})
	if err != nil {
		return nil, err
	}
	s.sites = append(s.sites, s.URL+"\x00"+prefix)
	return v.(*redisStore), nil
}

var redisSites = caddy.NewUsagePool()

// UnmarshalCaddyfile reads `store redis URL` or `store redis { url URL; prefix P }`.
func (s *RedisStore) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the backend's name
	if d.NextArg() {
		s.URL = d.Val()
		if d.NextArg() {
			return d.ArgErr()
		}
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var err error
		switch opt := d.Val(); opt {
		case "url":
			err = oneArg(d, &s.URL)
		case "prefix":
			err = oneArg(d, &s.Prefix)
		default:
			return d.Errf("unrecognized redis store option %q", opt)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// redisStore is the Store of one provider and client in Redis.
type redisStore struct {
	c       redis.UniversalClient
	prefix  string
	revoked *store.Revocations
	sub     *redis.PubSub
	stop    context.CancelFunc
	done    chan struct{}
}

func newRedisStore(c redis.UniversalClient, prefix string) *redisStore {
	ctx, cancel := context.WithCancel(context.Background())
	r := &redisStore{c: c, prefix: prefix, revoked: store.NewRevocations(), stop: cancel, done: make(chan struct{})}
	r.sub = c.Subscribe(ctx, prefix+"revocations")
	go r.follow(ctx)
	return r
}

// Destruct stops the subscriber (closing its connection ends a Receive under way).
func (r *redisStore) Destruct() error {
	r.stop()
	err := r.sub.Close()
	<-r.done
	return err
}

func (r *redisStore) name(key string) string {
	return r.prefix + strings.ReplaceAll(key, "\x00", ":")
}

// Claim sets the key only if it is new (SET NX), expiring when what it remembers does.
func (r *redisStore) Claim(ctx context.Context, key string, expires time.Time) (bool, error) {
	err := r.c.SetArgs(ctx, r.name(key), "1", redis.SetArgs{Mode: "NX", ExpireAt: expires}).Err()
	switch {
	case errors.Is(err, redis.Nil):
		return false, nil
	case err != nil:
		return false, err
	}
	return true, nil
}

// unlockScript deletes the lock only while it is still the holder's.
var unlockScript = redis.NewScript(`if redis.call("get", KEYS[1]) == ARGV[1] then return redis.call("del", KEYS[1]) end return 0`)

// TryLock takes the lock for at most ttl, holding a random token so that only its holder
// releases it.
func (r *redisStore) TryLock(ctx context.Context, key string, ttl time.Duration) (func(), bool, error) {
	token := rand.Text()
	name := r.name(key)
	err := r.c.SetArgs(ctx, name, token, redis.SetArgs{Mode: "NX", TTL: ttl}).Err()
	switch {
	case errors.Is(err, redis.Nil):
		return nil, false, nil
	case err != nil:
		return nil, false, err
	}
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = unlockScript.Run(ctx, r.c, []string{name}, token).Err()
	}, true, nil
}

// Horizon: Redis remembers every claim for its full time, across restarts and instances.
func (r *redisStore) Horizon() time.Time { return time.Time{} }

// Interface guards
var (
	_ storeBackend          = (*RedisStore)(nil)
	_ caddy.Provisioner     = (*RedisStore)(nil)
	_ caddy.CleanerUpper    = (*RedisStore)(nil)
	_ caddyfile.Unmarshaler = (*RedisStore)(nil)
	_ store.Store           = (*redisStore)(nil)
)

// The session registry in Redis: each session's record under sess:ID (JSON, expiring with it),
// indexed by expiry in the sorted set sessions; a revocation under revoked:ID (its value the
// session's expiry), announced on the channel revocations.

func (r *redisStore) Register(ctx context.Context, rec store.SessionRecord) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	_, err = r.c.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.SetArgs(ctx, r.prefix+"sess:"+rec.ID, b, redis.SetArgs{ExpireAt: rec.Expires})
		p.ZAdd(ctx, r.prefix+"sessions", redis.Z{Score: float64(rec.Expires.Unix()), Member: rec.ID})
		p.ZRemRangeByScore(ctx, r.prefix+"sessions", "-inf", strconv.FormatInt(time.Now().Unix(), 10))
		return nil
	})
	return err
}

func (r *redisStore) Sessions(ctx context.Context, f store.Filter) ([]store.SessionRecord, error) {
	ids, err := r.c.ZRangeByScore(ctx, r.prefix+"sessions", &redis.ZRangeBy{
		Min: strconv.FormatInt(time.Now().Unix()+1, 10), Max: "+inf"}).Result()
	if err != nil || len(ids) == 0 {
		return nil, err
	}
	keys := make([]string, len(ids))
	for i, id := range ids {
		keys[i] = r.prefix + "sess:" + id
	}
	vals, err := r.c.MGet(ctx, keys...).Result()
	if err != nil {
		return nil, err
	}
	var out []store.SessionRecord
	for _, v := range vals {
		var rec store.SessionRecord
		if s, ok := v.(string); ok && json.Unmarshal([]byte(s), &rec) == nil && !r.revoked.Has(rec.ID) && f.Match(rec) {
			out = append(out, rec)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Created.Before(out[j].Created) })
	return out, nil
}

func (r *redisStore) Revoke(ctx context.Context, recs []store.SessionRecord) error {
	if len(recs) == 0 {
		return nil
	}
	_, err := r.c.TxPipelined(ctx, func(p redis.Pipeliner) error {
		for _, rec := range recs {
			until := strconv.FormatInt(rec.Expires.Unix(), 10)
			p.SetArgs(ctx, r.prefix+"revoked:"+rec.ID, until, redis.SetArgs{ExpireAt: rec.Expires})
			p.Publish(ctx, r.prefix+"revocations", rec.ID+" "+until)
		}
		return nil
	})
	if err == nil {
		r.revoked.Add(recs, time.Now())
	}
	return err
}

func (r *redisStore) Revoked(id string) bool { return r.revoked.Has(id) }

// follow keeps the in-memory revocations in step with Redis: each revocation announced on the
// channel, and after every (re)subscription everything revoked so far, since announcements
// made while the connection was down were lost.
func (r *redisStore) follow(ctx context.Context) {
	defer close(r.done)
	for {
		msg, err := r.sub.Receive(ctx)
		if ctx.Err() != nil {
			return
		}
		switch m := msg.(type) {
		case *redis.Subscription:
			r.resync(ctx)
		case *redis.Message:
			id, until, _ := strings.Cut(m.Payload, " ")
			if secs, err := strconv.ParseInt(until, 10, 64); err == nil {
				r.revoked.Add([]store.SessionRecord{{ID: id, Expires: time.Unix(secs, 0)}}, time.Now())
			}
		}
		if err != nil {
			// go-redis reconnects by itself; wait a little so a Redis that is down is not
			// asked in a tight loop.
			select {
			case <-ctx.Done():
				return
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
}

// resync loads every revocation Redis holds for the site. SCAN walks one node: with Cluster,
// the node serving the site's slot.
func (r *redisStore) resync(ctx context.Context) {
	var c redis.Cmdable = r.c
	if cc, ok := r.c.(*redis.ClusterClient); ok {
		m, err := cc.MasterForKey(ctx, r.prefix+"revocations")
		if err != nil {
			return
		}
		c = m
	}
	var recs []store.SessionRecord
	iter := c.Scan(ctx, 0, r.prefix+"revoked:*", 500).Iterator()
	for iter.Next(ctx) {
		key := iter.Val()
		until, err := c.Get(ctx, key).Int64()
		if err == nil {
			recs = append(recs, store.SessionRecord{ID: strings.TrimPrefix(key, r.prefix+"revoked:"), Expires: time.Unix(until, 0)})
		}
	}
	if iter.Err() == nil {
		r.revoked.Add(recs, time.Now())
	}
}

// Server-side sessions: each session's sealed data under data:ID, expiring with it.

func (r *redisStore) PutSession(ctx context.Context, id string, data []byte, expires time.Time) error {
	return r.c.SetArgs(ctx, r.prefix+"data:"+id, data, redis.SetArgs{ExpireAt: expires}).Err()
}

func (r *redisStore) GetSession(ctx context.Context, id string) ([]byte, error) {
	b, err := r.c.Get(ctx, r.prefix+"data:"+id).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	return b, err
}

func (r *redisStore) DeleteSession(ctx context.Context, id string) error {
	return r.c.Del(ctx, r.prefix+"data:"+id).Err()
}
