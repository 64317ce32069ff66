/* postern: configuration types. A pst_config_t is built whole by
 * pst_config_load() and never changed afterwards: every worker reads it
 * without locks through the generation that owns it. */
#ifndef POSTERN_CONFIG_T_H
#define POSTERN_CONFIG_T_H

#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

typedef enum {
  PST_LOG_ERROR = 0,
  PST_LOG_WARN = 1,
  PST_LOG_INFO = 2,
  PST_LOG_DEBUG = 3,
} pst_log_level_t;

/* log_format: how the error log and the access log write a line. */
typedef enum {
  PST_LOG_TEXT = 0, /* "TIME LEVEL message" and the access log's space-separated fields */
  PST_LOG_JSON = 1, /* one JSON object per line (docs/config.md lists the fields) */
} pst_log_format_t;

typedef enum {
  PST_MODE_TCP = 0, /* forward the decrypted byte stream */
  PST_MODE_HTTP = 1 /* terminate HTTP/1.1 and HTTP/2, forward HTTP/1.1 */
} pst_mode_t;

/* What postern adds when it forwards a request in http mode. */
typedef enum {
  PST_FORWARDED_XFF = 0,     /* X-Forwarded-For (appended), -Proto, -Host (default) */
  PST_FORWARDED_RFC7239 = 1, /* Forwarded: for=...;proto=https;host=... (RFC 7239) */
} pst_forwarded_t;

typedef enum {
  PST_UNKNOWN_SNI_DEFAULT = 0, /* serve the default certificate */
  PST_UNKNOWN_SNI_REJECT = 1   /* fatal unrecognized_name alert (RFC 6066 3) */
} pst_unknown_sni_t;

/* 0-RTT policy (tls.early_data): RFC 8446 2.3, 8; RFC 8470. */
typedef enum {
  PST_EARLY_DATA_REJECT = 0, /* tickets advertise no early data; any sent is skipped (default) */
  PST_EARLY_DATA_ACCEPT = 1  /* accept up to max_early_data, with the strike register */
} pst_early_data_t;

/* What tcp mode does with accepted early data (tls.tcp_early_data). */
typedef enum {
  PST_TCP_EARLY_HOLD = 0,   /* keep it until the handshake completes (default) */
  PST_TCP_EARLY_FORWARD = 1 /* send it to the backend at once: its protocol is replay-safe */
} pst_tcp_early_t;

/* Client certificates (tls.client_auth.mode; RFC 8446 4.3.2, 4.4.2). */
typedef enum {
  PST_CLIENT_AUTH_NONE = 0,     /* no CertificateRequest (default) */
  PST_CLIENT_AUTH_OPTIONAL = 1, /* asked for; a client without one goes on, a bad one fails */
  PST_CLIENT_AUTH_REQUIRED = 2  /* none: certificate_required alert (TLS 1.3) */
} pst_client_auth_t;

/* tls.groups holds at most this many groups (config_tls.c names them). */
#define PST_TLS_MAX_GROUPS 4

/* Bit set of accepted TLS versions. */
#define PST_TLS12 0x1u
#define PST_TLS13 0x2u

/* Where in the YAML file a value was written (1-based, as printed). */
typedef struct {
  int line;
  int column;
} pst_mark_t;

/* Where the 0-RTT strike register lives (early_data_replay.store): RFC
 * 8446 8 asks a fleet sharing ticket keys to share anti-replay state too. */
typedef enum {
  PST_REPLAY_STORE_LOCAL = 0, /* this process's register only (replay.h); default */
  PST_REPLAY_STORE_REDIS = 1, /* the local register, then a claim in Redis shared by a
                               * fleet (replay_redis.h) */
} pst_replay_store_t;

/* early_data_replay (config_replay.c). Strings are owned by the config. */
typedef struct {
  pst_replay_store_t store;
  char *address;   /* redis.address as written ("127.0.0.1:6379", "unix:/path"); NULL
                    * without a redis mapping */
  char *host;      /* TCP: the numeric address resolved at load; NULL for unix */
  int port;        /* TCP port */
  char *unix_path; /* unix: the socket path; NULL for TCP */
  char *password;  /* redis.password_file's contents (AUTH), read at load; NULL: no AUTH */
  size_t password_len;
  char *key_prefix;       /* redis.key_prefix; default "postern:0rtt:" */
  uint64_t timeout_ms;    /* redis.timeout: the answer's budget; default 5ms */
  unsigned max_in_flight; /* redis.max_in_flight: commands per worker; default 1024 */
  pst_mark_t mark;        /* the early_data_replay mapping */
} pst_replay_store_conf_t;

/* A resolved socket address plus the text the user wrote ("127.0.0.1:8443"). */
typedef struct {
  struct sockaddr_storage ss;
  socklen_t len;
  char text[128];
} pst_addr_t;

/* The PROXY protocol (HAProxy's proxy-protocol.txt): the header version a
 * listener accepts first from its clients (listeners[].accept_proxy) or one
 * backend's servers receive on each new connection (proxy_protocol). */
typedef enum {
  PST_PROXY_NONE = 0,
  PST_PROXY_V1 = 1,  /* the text header */
  PST_PROXY_V2 = 2,  /* the binary header, with TLVs */
  PST_PROXY_ANY = 3, /* accept_proxy only: either, told apart by the first bytes */
} pst_proxy_t;

/* One address block of listeners[].trusted_proxies ("10.0.0.0/8"). */
typedef struct {
  int family;             /* AF_INET or AF_INET6 */
  unsigned char addr[16]; /* network byte order; bits past prefix are zero */
  unsigned prefix;        /* 0..32 or 0..128 */
} pst_cidr_t;

typedef enum {
  PST_BACKEND_ADDR = 0,        /* a TCP address */
  PST_BACKEND_BUILTIN_INFO = 1 /* "builtin:info": postern answers itself */
} pst_backend_kind_t;

/* backends.<name>.balance: how a set's servers share the requests. */
typedef enum {
  PST_BALANCE_ROUND_ROBIN = 0, /* smooth weighted round robin (nginx's): no bursts (default) */
  PST_BALANCE_LEAST_CONN = 1,  /* fewest connections in use per weight, per worker */
  PST_BALANCE_CLIENT_IP = 2,   /* consistent hash of the client address (a ring) */
} pst_balance_t;

/* backends.<name>.health.check: how a server's health is probed. */
typedef enum {
  PST_CHECK_NONE = 0, /* no active check: servers are up unless ejected passively (default) */
  PST_CHECK_TCP = 1,  /* a TCP connect */
  PST_CHECK_HTTP = 2, /* GET health.path over HTTP/1.1: 2xx or 3xx is healthy */
} pst_check_t;

/* One server of a backend set. */
typedef struct {
  pst_addr_t addr; /* resolved at load (and so on every reload); text as written */
  unsigned weight; /* 1..1000; default 1 */
  pst_mark_t mark; /* the list item */
} pst_server_conf_t;

/* A backend set (top-level backends:, config_backend.c): servers, how they
 * share the load, how their health is known, and how failures are retried.
 * A backend written as "host:port" is a set of its own with one server and
 * the defaults (inline), so that one code path serves both. */
typedef struct pst_backend_set_s {
  char *name;     /* the key under backends:, or the host:port text of an inline set */
  int inline_set; /* written as host:port at a backend key */
  pst_server_conf_t *servers;
  size_t n_servers; /* 1..PST_MAX_SERVERS */
  pst_balance_t balance;
  pst_check_t check;
  char *check_path;             /* health.path; default "/" */
  uint64_t check_interval_ms;   /* health.interval; default 2s */
  uint64_t check_timeout_ms;    /* health.timeout; default 1s, at most the interval */
  unsigned rise;                /* consecutive successes to come back; default 2 */
  unsigned fall;                /* consecutive failures to go out; default 3 */
  unsigned passive_failures;    /* passive.failures; 0: off; default 5 */
  uint64_t passive_cooldown_ms; /* passive.cooldown; default 10s */
  unsigned retries;             /* other servers tried after a failure; default 1 */
  pst_proxy_t proxy_protocol;   /* a PROXY header on each new server connection */
  /* tls: (config_backend.c): TLS to the servers (re-encryption), or tls 0. */
  int tls;
  char *tls_ca_file;     /* tls.ca_file: the anchors; NULL: the system store */
  char *tls_server_name; /* tls.server_name: SNI and the name checked; NULL: each server's host */
  int tls_verify;        /* tls.verify; default 1 (0 only with a warning at every load) */
  pst_mark_t tls_mark;
  pst_mark_t tls_ca_mark;
  /* The client context of this set (tls.h, pst_tls_backend_init): built by
   * the generation off the loops, freed with it; every connection's WOLFSSL
   * holds a reference of its own (wolfSSL counts them). */
  struct WOLFSSL_CTX *tls_ctx;
  pst_mark_t mark;
  /* What the balancer built for this set (balance.h): attached by the
   * generation before any worker sees the config, never changed after. */
  struct pst_bset_s *rt;
} pst_backend_set_conf_t;

/* Servers a set may have. */
#define PST_MAX_SERVERS 256

typedef struct {
  pst_backend_kind_t kind;
  /* PST_BACKEND_ADDR: the set it names (a named set, or the inline set of a
   * "host:port"), and addr its first server's address. addr.text holds the
   * text as written either way. NULL for builtin:info, and for a backend
   * made by hand (tests) that is one address. */
  const pst_backend_set_conf_t *set;
  pst_addr_t addr;
  pst_mark_t mark;
  /* The ALPN protocols (RFC 7301 3.1 wire format) a connection routed here
   * may negotiate: the listener's list, except that a tcp-mode route to
   * builtin:info offers only http/1.1, which is what its application
   * speaks there. Points into the listener's alpn_wire or at a constant. */
  const unsigned char *alpn_wire;
  size_t alpn_wire_len;
  pst_proxy_t proxy_protocol; /* a PROXY header first on each new server connection */
} pst_backend_conf_t;

typedef struct {
  char *cert;      /* path of the chain file: leaf first, then intermediates */
  char *key;       /* path of the private key */
  pst_mark_t mark; /* the list item */
  pst_mark_t cert_mark;
  pst_mark_t key_mark;
  char *ocsp; /* the DER OCSP response to staple (cert_ocsp.c); NULL: none */
  pst_mark_t ocsp_mark;
} pst_cert_conf_t;

typedef struct {
  char **names; /* lower-cased server names; "*.x" wildcards allowed */
  size_t n_names;
  pst_backend_conf_t backend;
  pst_mark_t mark;
} pst_route_conf_t;

typedef struct {
  char *name;
  /* The listener's counters (metrics.h): set by pst_gen_build from name; 0
   * (the overflow slot) in a configuration no generation was built from. */
  unsigned metrics_slot;
  pst_addr_t listen;
  pst_mark_t listen_mark;
  pst_mode_t mode;

  /* ALPN protocols in server preference order, and the same list in the
   * wire format of RFC 7301 3.1 (length-prefixed names). */
  char **alpn;
  size_t n_alpn;
  unsigned char *alpn_wire;
  size_t alpn_wire_len;

  unsigned versions; /* PST_TLS12 | PST_TLS13; default PST_TLS13 */
  pst_cert_conf_t *certs;
  size_t n_certs;
  char *default_certificate; /* NULL: the first certificate */
  pst_mark_t default_certificate_mark;
  pst_unknown_sni_t unknown_sni;
  char *ca_file; /* NULL: the system store */
  pst_mark_t ca_file_mark;
  char *intermediates; /* tls.intermediates: CA bundle completing chains; NULL: none */
  pst_mark_t intermediates_mark;
  /* tls.ocsp_dir: a directory of OCSP responses, <cert file name>.ocsp for
   * each certificate without an ocsp key of its own; NULL: none. */
  char *ocsp_dir;
  pst_mark_t ocsp_dir_mark;
  /* tls.groups: key-exchange groups in preference order, as IANA
   * NamedGroup codes (RFC 8446 4.2.7); default x25519, p256, p384. */
  uint16_t groups[PST_TLS_MAX_GROUPS];
  unsigned n_groups;
  /* tls.client_auth (config_tls.c): mode, the CA file client certificates
   * are verified against (never the system store), and forward: headers
   * (RFC 9440 Client-Cert and Client-Cert-Chain to http backends). */
  pst_client_auth_t client_auth;
  char *client_ca_file; /* required unless mode is none */
  pst_mark_t client_ca_file_mark;
  pst_mark_t client_auth_mark;
  int client_cert_forward; /* forward: headers */

  /* Session resumption and 0-RTT (config_tls.c, ticket.h, replay.h). */
  int session_tickets; /* tls.session_tickets; default 1 */
  char *ticket_keys;   /* tls.ticket_keys: key file; NULL: in-memory keys */
  pst_mark_t ticket_keys_mark;
  uint64_t ticket_rotation_ms;    /* tls.ticket_rotation (in-memory keys); default 1h */
  uint64_t ticket_lifetime_ms;    /* tls.ticket_lifetime; default 6h, at most 7 days */
  pst_early_data_t early_data;    /* tls.early_data; default reject */
  unsigned max_early_data;        /* tls.max_early_data, bytes; default 16384 */
  pst_tcp_early_t tcp_early_data; /* tls.tcp_early_data; default hold */

  /* PROXY protocol from L4 balancers in front (proxy.h): the header every
   * client connection must start with, from an address in trusted_proxies. */
  pst_proxy_t accept_proxy; /* default none */
  pst_mark_t accept_proxy_mark;
  pst_cidr_t *trusted_proxies;
  size_t n_trusted_proxies;

  pst_backend_conf_t backend;
  pst_route_conf_t *routes;
  size_t n_routes;

  uint64_t handshake_timeout_ms;       /* default 10s */
  uint64_t idle_timeout_ms;            /* default 60s */
  uint64_t request_head_timeout_ms;    /* timeouts.request_head; default 10s */
  uint64_t backend_connect_timeout_ms; /* default 5s */
  unsigned max_connections;            /* per worker; default 10000 */
  /* Per worker: handshakes started and not finished plus connections
   * waiting in the listen queue; above it new ones are shed at accept
   * (docs/config.md, "Under overload"). Default 512. */
  unsigned max_handshakes_in_flight;

  /* http mode (ignored in tcp mode) */
  pst_forwarded_t forwarded;          /* default xff */
  char *access_log;                   /* NULL: off; "stderr"; or a file path */
  size_t max_header_bytes;            /* limits.max_header_bytes; default 32768 */
  unsigned h2_max_concurrent_streams; /* h2.max_concurrent_streams; default 128 */
  unsigned h2_stream_reset_rate;      /* h2.stream_reset_rate per second; default 100 */
  unsigned h2_stream_reset_burst;     /* h2.stream_reset_burst; default 200 */
  unsigned pool_max_idle;     /* backend_pool.max_idle per backend per worker; default 4096 */
  unsigned pool_max_idle_mib; /* backend_pool.max_idle_mib per worker; default 64 */
  uint64_t pool_idle_ms;      /* backend_pool.idle; default 60s */
  uint64_t backend_response_timeout_ms; /* timeouts.backend_response; default 60s */
  pst_mark_t mark;                      /* the list item */
} pst_listener_conf_t;

typedef struct {
  char *path;                  /* the file it was read from */
  unsigned workers;            /* resolved: "auto" became the number of cores */
  pst_log_level_t log_level;   /* default info */
  pst_log_format_t log_format; /* default text */
  /* user: and group: (priv.h): who postern becomes once its listeners are
   * bound and its keys read. user NULL: it stays who started it. */
  char *user;  /* the name as written; NULL when absent */
  char *group; /* NULL: the user's primary group */
  uid_t uid;   /* user's, resolved at load */
  gid_t gid;   /* group's, or the user's primary group */
  pst_mark_t user_mark;
  pst_mark_t group_mark;        /* when group is set */
  uint64_t shutdown_timeout_ms; /* default 10s */
  unsigned expiry_warn_days;    /* warn about leaves expiring within this; default 21 */
  int watch;                    /* reload when a file changes (inotify); default 0 */
  uint64_t watch_debounce_ms;   /* quiet time before a watch reload; default 1s */
  pst_replay_store_conf_t early_data_replay; /* the 0-RTT strike register's store */
  /* admin: (admin.h): the plain HTTP/1.1 endpoint for /metrics, /healthz and
   * /readyz, on its own socket. Off when the key is absent. */
  int admin_on;                 /* admin.listen was given */
  pst_addr_t admin_listen;      /* admin.listen */
  pst_mark_t admin_listen_mark; /* where admin.listen was written */
  pst_listener_conf_t *listeners;
  size_t n_listeners;
  /* Backend sets: the named ones of backends: in file order, then the
   * inline sets of "host:port" backends (one per distinct text). Pointers,
   * so that a set's address never moves. */
  pst_backend_set_conf_t **backends;
  size_t n_backends;
} pst_config_t;

#endif
