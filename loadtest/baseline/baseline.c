/*
 * shoal-baseline: the yardstick. The lowest-overhead echo server we can
 * write: C, epoll, one SO_REUSEPORT listener per thread, nothing shared
 * between threads. TCP echo and a minimal RFC 6455 WebSocket echo (every
 * data frame is echoed unmasked with the same opcode and FIN bit; ping gets
 * pong; close is echoed and the connection closed).
 *
 * An idle connection costs one small struct: input and output buffers are
 * per thread, and a connection only holds bytes of its own while a frame is
 * incomplete or the peer is not reading.
 *
 *   shoal-baseline [-a ADDR] [-p TCP_PORT] [-w WS_PORT] [-t THREADS]
 *
 * Port 0 picks a free port; the chosen ports are printed as
 *   baseline: tcp-echo listening on ADDR:PORT
 *   baseline: websocket-echo listening on ADDR:PORT
 *   baseline: ready
 * It runs until SIGTERM or SIGINT.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BUF_SIZE (256 * 1024)
#define MAX_FRAME (16u * 1024 * 1024)
#define MAX_HANDSHAKE 8192

enum kind { K_TCP_LISTEN, K_WS_LISTEN, K_TCP, K_WS_HANDSHAKE, K_WS };

struct conn {
  int fd;
  uint8_t kind;
  uint8_t closing;   /* WS: close echoed, close when the output is flushed */
  uint32_t in_len;   /* bytes held in `in` (partial frame or request) */
  uint32_t out_len, out_off;
  char *in;          /* allocated only while something is partial */
  char *out;         /* allocated only while the peer does not take our writes */
};

struct thread_ctx {
  int epfd;
  int tcp_listen, ws_listen;
  struct conn tcp_l, ws_l;
  char *rbuf;  /* BUF_SIZE + MAX_FRAME headroom for a partial frame */
  char *obuf;
  size_t obuf_cap;
};

static const char *g_addr = "127.0.0.1";
static int g_tcp_port = -1, g_ws_port = -1;

static void die(const char *what) {
  perror(what);
  exit(1);
}

static int make_listener(int *port) {
  struct sockaddr_storage ss;
  socklen_t len;
  memset(&ss, 0, sizeof ss);
  int family = strchr(g_addr, ':') ? AF_INET6 : AF_INET;
  if (family == AF_INET) {
    struct sockaddr_in *a = (struct sockaddr_in *)&ss;
    a->sin_family = AF_INET;
    a->sin_port = htons((uint16_t)*port);
    if (inet_pton(AF_INET, g_addr, &a->sin_addr) != 1) die("address");
    len = sizeof *a;
  } else {
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
    a->sin6_family = AF_INET6;
    a->sin6_port = htons((uint16_t)*port);
    if (inet_pton(AF_INET6, g_addr, &a->sin6_addr) != 1) die("address");
    len = sizeof *a;
  }
  int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) die("socket");
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
  if (bind(fd, (struct sockaddr *)&ss, len) != 0) die("bind");
  if (listen(fd, 4096) != 0) die("listen");
  if (*port == 0) {
    if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0) die("getsockname");
    *port = ntohs(family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port : ((struct sockaddr_in6 *)&ss)->sin6_port);
  }
  return fd;
}

static void ep_add(struct thread_ctx *t, struct conn *c, uint32_t events) {
  struct epoll_event ev = {.events = events, .data.ptr = c};
  if (epoll_ctl(t->epfd, EPOLL_CTL_ADD, c->fd, &ev) != 0) die("epoll_ctl");
}

static void ep_mod(struct thread_ctx *t, struct conn *c, uint32_t events) {
  struct epoll_event ev = {.events = events, .data.ptr = c};
  epoll_ctl(t->epfd, EPOLL_CTL_MOD, c->fd, &ev);
}

static void conn_close(struct conn *c) {
  close(c->fd);
  free(c->in);
  free(c->out);
  free(c);
}

/* Sends `len` bytes; keeps what the socket did not take in c->out and
 * switches the connection to EPOLLOUT. Returns -1 when the connection died. */
static int send_or_queue(struct thread_ctx *t, struct conn *c, const char *p, size_t len) {
  if (c->out_len > c->out_off) { /* already queued: append */
    char *n = realloc(c->out, c->out_len + len);
    if (!n) return -1;
    c->out = n;
    memcpy(c->out + c->out_len, p, len);
    c->out_len += (uint32_t)len;
    return 0;
  }
  size_t off = 0;
  while (off < len) {
    ssize_t n = send(c->fd, p + off, len - off, MSG_NOSIGNAL);
    if (n > 0) {
      off += (size_t)n;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    return -1;
  }
  if (off == len) return 0;
  free(c->out);
  c->out = malloc(len - off);
  if (!c->out) return -1;
  memcpy(c->out, p + off, len - off);
  c->out_len = (uint32_t)(len - off);
  c->out_off = 0;
  ep_mod(t, c, EPOLLOUT); /* stop reading until the peer catches up */
  return 0;
}

/* EPOLLOUT: flush the queue; back to reading when empty. */
static int flush_out(struct thread_ctx *t, struct conn *c) {
  while (c->out_off < c->out_len) {
    ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
    if (n > 0) {
      c->out_off += (uint32_t)n;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 0;
    return -1;
  }
  free(c->out);
  c->out = NULL;
  c->out_len = c->out_off = 0;
  if (c->closing) return -1;
  ep_mod(t, c, EPOLLIN);
  return 0;
}

static void accept_all(struct thread_ctx *t, int lfd, uint8_t kind) {
  for (;;) {
    int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
        struct timespec ts = {0, 10 * 1000 * 1000}; /* back off instead of spinning */
        nanosleep(&ts, NULL);
      }
      return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct conn *c = calloc(1, sizeof *c);
    if (!c) {
      close(fd);
      continue;
    }
    c->fd = fd;
    c->kind = kind;
    ep_add(t, c, EPOLLIN);
  }
}

/* ---- WebSocket ---------------------------------------------------------- */

static const char *find_header(const char *req, const char *name) {
  size_t nl = strlen(name);
  const char *p = strstr(req, "\r\n");
  while (p && p[2] != '\r') {
    p += 2;
    if (strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
      p += nl + 1;
      while (*p == ' ' || *p == '\t') ++p;
      return p;
    }
    p = strstr(p, "\r\n");
  }
  return NULL;
}

static void base64(const unsigned char *in, int n, char *out) {
  static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  int o = 0;
  for (int i = 0; i < n; i += 3) {
    uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0) | (i + 2 < n ? in[i + 2] : 0);
    out[o++] = a[(v >> 18) & 63];
    out[o++] = a[(v >> 12) & 63];
    out[o++] = i + 1 < n ? a[(v >> 6) & 63] : '=';
    out[o++] = i + 2 < n ? a[v & 63] : '=';
  }
  out[o] = 0;
}

/* Returns -1 to close, 0 to wait for more, 1 when upgraded. */
static int ws_handshake(struct thread_ctx *t, struct conn *c, const char *data, size_t n) {
  if (c->in_len + n > MAX_HANDSHAKE) return -1;
  char *nb = realloc(c->in, c->in_len + n + 1);
  if (!nb) return -1;
  c->in = nb;
  memcpy(c->in + c->in_len, data, n);
  c->in_len += (uint32_t)n;
  c->in[c->in_len] = 0;
  char *end = strstr(c->in, "\r\n\r\n");
  if (!end) return 0;
  if (strncmp(c->in, "GET ", 4) != 0) return -1;
  const char *key = find_header(c->in, "Sec-WebSocket-Key");
  const char *up = find_header(c->in, "Upgrade");
  if (!key || !up || strncasecmp(up, "websocket", 9) != 0) {
    static const char bad[] = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    (void)!send(c->fd, bad, sizeof bad - 1, MSG_NOSIGNAL);
    return -1;
  }
  size_t klen = strcspn(key, " \t\r\n");
  char buf[128];
  if (klen > 64) return -1;
  memcpy(buf, key, klen);
  memcpy(buf + klen, "258EAFA5-E914-47DA-95CA-C5AB0DC85B11", 36);
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int dlen = 0;
  EVP_Digest(buf, klen + 36, digest, &dlen, EVP_sha1(), NULL);
  char accept[64];
  base64(digest, (int)dlen, accept);
  char resp[256];
  int rl = snprintf(resp, sizeof resp,
                    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    "Sec-WebSocket-Accept: %s\r\n\r\n",
                    accept);
  size_t rest = c->in_len - (size_t)(end + 4 - c->in);
  char *leftover = NULL;
  if (rest) {
    leftover = malloc(rest);
    if (!leftover) return -1;
    memcpy(leftover, end + 4, rest);
  }
  free(c->in);
  c->in = leftover;
  c->in_len = (uint32_t)rest;
  c->kind = K_WS;
  if (send_or_queue(t, c, resp, (size_t)rl) < 0) return -1;
  return 1;
}

static void obuf_reserve(struct thread_ctx *t, size_t need) {
  if (need <= t->obuf_cap) return;
  size_t cap = t->obuf_cap ? t->obuf_cap : BUF_SIZE;
  while (cap < need) cap *= 2;
  t->obuf = realloc(t->obuf, cap);
  if (!t->obuf) die("realloc");
  t->obuf_cap = cap;
}

/* Parses whole frames in p[0..n), writes the echoes into t->obuf. Returns
 * the bytes consumed (the rest is a partial frame) or -1 on a protocol error
 * or close. */
static long ws_frames(struct thread_ctx *t, struct conn *c, char *p, size_t n, size_t *olen) {
  size_t i = 0;
  while (n - i >= 2) {
    unsigned char b0 = (unsigned char)p[i], b1 = (unsigned char)p[i + 1];
    if (!(b1 & 0x80) || (b0 & 0x70)) return -1; /* clients must mask; no extensions */
    uint64_t len = b1 & 0x7f;
    size_t h = 2;
    if (len == 126) {
      if (n - i < 4) break;
      len = (uint64_t)(unsigned char)p[i + 2] << 8 | (unsigned char)p[i + 3];
      h = 4;
    } else if (len == 127) {
      if (n - i < 10) break;
      len = 0;
      for (int k = 0; k < 8; ++k) len = len << 8 | (unsigned char)p[i + 2 + k];
      h = 10;
    }
    if (len > MAX_FRAME) return -1;
    if (n - i < h + 4 + len) break;
    unsigned char mask[4];
    memcpy(mask, p + i + h, 4);
    char *payload = p + i + h + 4;
    unsigned op = b0 & 0x0f;
    if (op != 0x0 && op != 0x1 && op != 0x2 && op != 0x8 && op != 0x9 && op != 0xA) return -1;
    obuf_reserve(t, *olen + len + 10);
    char *o = t->obuf + *olen;
    size_t oh = 0;
    o[oh++] = (char)(op == 0x9 ? (0x80 | 0xA) : b0); /* ping -> pong, else same bits */
    if (len < 126) {
      o[oh++] = (char)len;
    } else if (len <= 0xffff) {
      o[oh++] = 126;
      o[oh++] = (char)(len >> 8);
      o[oh++] = (char)len;
    } else {
      o[oh++] = 127;
      for (int s = 56; s >= 0; s -= 8) o[oh++] = (char)(len >> s);
    }
    for (uint64_t k = 0; k < len; ++k) o[oh + k] = (char)(payload[k] ^ mask[k & 3]);
    i += h + 4 + len;
    if (op == 0xA) continue; /* pong: nothing to echo */
    *olen += oh + len;
    if (op == 0x8) {
      c->closing = 1;
      return -1;
    }
  }
  return (long)i;
}

/* ---- the loop ------------------------------------------------------------ */

static void on_readable(struct thread_ctx *t, struct conn *c) {
  for (;;) {
    char *buf = t->rbuf;
    size_t have = 0;
    if (c->in_len && c->kind == K_WS) { /* a partial frame first */
      memcpy(buf, c->in, c->in_len);
      have = c->in_len;
    }
    ssize_t n = recv(c->fd, buf + have, BUF_SIZE, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    if (n <= 0) {
      conn_close(c);
      return;
    }
    if (c->kind == K_TCP) {
      if (send_or_queue(t, c, buf, (size_t)n) < 0) {
        conn_close(c);
        return;
      }
    } else if (c->kind == K_WS_HANDSHAKE) {
      int r = ws_handshake(t, c, buf, (size_t)n);
      if (r < 0) {
        conn_close(c);
        return;
      }
      if (r == 0) continue;
      if (c->in_len == 0) {
        if (c->out_len) return;
        continue;
      }
      /* Frames arrived with the request: handle them below. */
      memcpy(buf, c->in, c->in_len);
      n = c->in_len;
      free(c->in);
      c->in = NULL;
      c->in_len = 0;
      have = 0;
      goto frames;
    } else {
    frames:;
      size_t total = have + (size_t)n, olen = 0;
      free(c->in);
      c->in = NULL;
      c->in_len = 0;
      long used = ws_frames(t, c, buf, total, &olen);
      if (olen && send_or_queue(t, c, t->obuf, olen) < 0) {
        conn_close(c);
        return;
      }
      if (used < 0) {
        if (c->closing && c->out_len) return; /* close after the flush */
        conn_close(c);
        return;
      }
      if ((size_t)used < total) {
        c->in_len = (uint32_t)(total - (size_t)used);
        c->in = malloc(c->in_len);
        if (!c->in) {
          conn_close(c);
          return;
        }
        memcpy(c->in, buf + used, c->in_len);
      }
    }
    if (c->out_len) return; /* peer is slow: wait for EPOLLOUT, read no more */
    if ((size_t)n < BUF_SIZE) return; /* level-triggered: epoll tells us if more came */
  }
}

static void *thread_main(void *arg) {
  struct thread_ctx *t = arg;
  struct epoll_event events[512];
  for (;;) {
    int n = epoll_wait(t->epfd, events, 512, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      die("epoll_wait");
    }
    for (int i = 0; i < n; ++i) {
      struct conn *c = events[i].data.ptr;
      if (c->kind == K_TCP_LISTEN) {
        accept_all(t, c->fd, K_TCP);
      } else if (c->kind == K_WS_LISTEN) {
        accept_all(t, c->fd, K_WS_HANDSHAKE);
      } else if (events[i].events & EPOLLOUT) {
        if (flush_out(t, c) < 0) conn_close(c);
      } else {
        on_readable(t, c);
      }
    }
  }
  return NULL;
}

int main(int argc, char **argv) {
  int threads = 1, opt;
  while ((opt = getopt(argc, argv, "a:p:w:t:h")) != -1) {
    switch (opt) {
      case 'a': g_addr = optarg; break;
      case 'p': g_tcp_port = atoi(optarg); break;
      case 'w': g_ws_port = atoi(optarg); break;
      case 't': threads = atoi(optarg); break;
      default:
        fprintf(stderr, "usage: %s [-a ADDR] [-p TCP_PORT] [-w WS_PORT] [-t THREADS]\n", argv[0]);
        return opt == 'h' ? 0 : 2;
    }
  }
  if (threads < 1 || threads > 256 || (g_tcp_port < 0 && g_ws_port < 0)) {
    fprintf(stderr, "%s: give -p and/or -w, and 1-256 threads\n", argv[0]);
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  struct thread_ctx *ctx = calloc((size_t)threads, sizeof *ctx);
  if (!ctx) die("calloc");
  for (int i = 0; i < threads; ++i) {
    struct thread_ctx *t = &ctx[i];
    t->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (t->epfd < 0) die("epoll_create1");
    t->rbuf = malloc(BUF_SIZE + MAX_FRAME + 16);
    if (!t->rbuf) die("malloc");
    obuf_reserve(t, BUF_SIZE);
    if (g_tcp_port >= 0) {
      t->tcp_l.fd = make_listener(&g_tcp_port); /* port 0: the first picks, the rest share */
      t->tcp_l.kind = K_TCP_LISTEN;
      ep_add(t, &t->tcp_l, EPOLLIN);
    }
    if (g_ws_port >= 0) {
      t->ws_l.fd = make_listener(&g_ws_port);
      t->ws_l.kind = K_WS_LISTEN;
      ep_add(t, &t->ws_l, EPOLLIN);
    }
  }
  if (g_tcp_port >= 0) printf("baseline: tcp-echo listening on %s:%d\n", g_addr, g_tcp_port);
  if (g_ws_port >= 0) printf("baseline: websocket-echo listening on %s:%d\n", g_addr, g_ws_port);
  printf("baseline: ready: %d threads\n", threads);
  fflush(stdout);
  pthread_t *tids = calloc((size_t)threads, sizeof *tids);
  for (int i = 1; i < threads; ++i) pthread_create(&tids[i], NULL, thread_main, &ctx[i]);
  thread_main(&ctx[0]);
  return 0;
}
