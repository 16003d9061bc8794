/*
 * vtl-rmt-bridge: `vtl rmt` in C. It speaks rmt on stdin/stdout and relays to a vtl rmt server,
 * with the same write-behind and read-ahead as the TypeScript bridge (src/protocols/rmt/bridge.ts,
 * whose comment is the specification; the server's side is session.ts). `vtl rmt` runs it when
 * it is built; both run one conformance suite (test/protocols/rmt/bridge.test.ts).
 *
 * Why C: rmt clients wait for each reply, so every record crosses this process twice. The
 * Node bridge spent 0.37-0.50 CPU seconds per 268 MB (four times tar's own) on cores the
 * server's store needs, and its relay alone read at under 320 MB/s.
 *
 * Two threads: the main thread reads the client's commands and writes every answer; the reply
 * thread reads the server's replies in order and settles what is owed. All shared state is
 * under one mutex; a condition variable announces every settled reply.
 *
 * It connects at the client's first command. A session that opens for writing on a server on
 * this host moves to the server's local socket (moveToLocal); the TypeScript bridge stays on TCP.
 *
 * Usage: vtl-rmt-bridge HOST:PORT   (also [V6]:PORT, HOST, :PORT). Exit 0 when the client's
 * input ends (or the server hangs up), 1 on an error, said on stderr.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

/* As bridge.ts: the server's limits on argument lines, the longest reply line, the records. */
#define MAX_NAME 4096
#define MAX_ARG 256
#define MAX_REPLY_LINE 4096
#define MAX_RECORD (2 * 1024 * 1024)
#define READ_WINDOW (4 * 1024 * 1024)
#define MAX_READ_AHEAD 64
#define BRIDGE_VERSION 2
#define PIPE_BYTES (1024 * 1024)
/* Most bytes one read takes into an input buffer (see fill). */
#define FILL_BYTES (16 * 1024)

/* ---- replies and what is owed ------------------------------------------------------------ */

typedef struct {
  int ok;
  char line[MAX_REPLY_LINE + 1]; /* after the letter */
  long long value;
  char message[MAX_REPLY_LINE + 1];
  unsigned char *data; /* R and S replies with value > 0 */
} Reply;

enum { PLAIN, WRITE_AHEAD, READ_AHEAD };

typedef struct Call {
  struct Call *next;       /* in the owed queue */
  struct Call *nextAhead;  /* in the reads-ahead queue */
  int kind;
  int data;     /* the reply carries data */
  int settled;  /* the reply came (or the connection was lost: failed) */
  int failed;
  int discard;  /* nobody will read it: freed when settled */
  long long n;  /* bytes of a write ahead */
  Reply r;
} Call;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static Call *owedHead, *owedTail;
static Call *aheadHead, *aheadTail; /* reads sent ahead, in order */
static int aheadReads;
static int aheadWrites;
static long long aheadBytes, credit;
static int haveHeld;
static Reply held;
static int closed;   /* the server closed the connection */
static int raw;      /* relaying raw bytes both ways */
static int extended; /* the server spoke the extension */
static int reading;
static char readLine[MAX_ARG + 1];
static int sock = -1;
static int wakeFds[2] = {-1, -1}; /* the reply thread wakes the main thread's stdin wait */
static void connectOnce(int local);

static void die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("vtl rmt: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  exit(1);
}

static void freeCall(Call *c) {
  free(c->r.data);
  free(c);
}

/* ---- buffered input ---------------------------------------------------------------------- */

typedef struct {
  int fd;
  int wake; /* also poll this fd; readable means: stop */
  unsigned char *buf;
  size_t at, len, cap;
  int ended;
} Input;

/* One read(2) of at most cap bytes into dst, waiting for input; 0 at the end of input (or when
 * woken to stop). */
static size_t readSome(Input *in, unsigned char *dst, size_t cap) {
  if (in->ended) return 0;
  for (;;) {
    if (in->wake >= 0) {
      struct pollfd p[2] = {{in->fd, POLLIN, 0}, {in->wake, POLLIN, 0}};
      if (poll(p, 2, -1) < 0) {
        if (errno == EINTR) continue;
        in->ended = 1;
        return 0;
      }
      if ((p[1].revents & POLLIN) && !(p[0].revents & (POLLIN | POLLHUP))) {
        in->ended = 1;
        return 0;
      }
    }
    ssize_t k = read(in->fd, dst, cap);
    if (k < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (k <= 0) {
      in->ended = 1;
      return 0;
    }
    return (size_t)k;
  }
}

/*
 * Fills the buffer with at most FILL_BYTES more; 0 at the end of input (or when woken to stop).
 * Reading little at a time leaves a record's payload in the kernel, for inExact to read
 * straight to where it goes.
 */
static int fill(Input *in) {
  if (in->at > 0 && in->at == in->len) in->at = in->len = 0;
  if (in->len == in->cap) {
    memmove(in->buf, in->buf + in->at, in->len - in->at);
    in->len -= in->at;
    in->at = 0;
  }
  size_t room = in->cap - in->len;
  size_t k = readSome(in, in->buf + in->len, room < FILL_BYTES ? room : FILL_BYTES);
  in->len += k;
  return k > 0;
}

static int inByte(Input *in) {
  if (in->at == in->len && !fill(in)) return -1;
  return in->buf[in->at++];
}

/*
 * A line of at most `max` bytes (newline dropped) into out; 1 on success, 0 at the end of input,
 * -1 when longer (the bytes read so far are in out, `*got` of them, not terminated by a newline).
 */
static int inLine(Input *in, char *out, size_t max, size_t *got) {
  size_t n = 0;
  for (;;) {
    int c = inByte(in);
    if (c < 0) {
      *got = n;
      return 0;
    }
    if (c == '\n') {
      out[n] = 0;
      *got = n;
      return 1;
    }
    if (n == max) {
      in->at--; /* left for the raw relay */
      *got = n;
      return -1;
    }
    out[n++] = (char)c;
  }
}

/*
 * Exactly n bytes into out; 0 if the input ends first. What is buffered is copied; the rest of
 * a large payload is read straight into out (one copy less per record, on both directions).
 */
static int inExact(Input *in, unsigned char *out, size_t n) {
  while (n > 0) {
    if (in->at == in->len && n >= FILL_BYTES) {
      size_t k = readSome(in, out, n);
      if (k == 0) return 0;
      out += k;
      n -= k;
      continue;
    }
    if (in->at == in->len && !fill(in)) return 0;
    size_t k = in->len - in->at < n ? in->len - in->at : n;
    memcpy(out, in->buf + in->at, k);
    in->at += k;
    out += k;
    n -= k;
  }
  return 1;
}

/* ---- output ------------------------------------------------------------------------------ */

/* Writes all of v; 0 if the peer is gone. */
static int writeAll(int fd, struct iovec *v, int n) {
  while (n > 0) {
    ssize_t w = writev(fd, v, n);
    if (w < 0) {
      if (errno == EINTR || errno == EAGAIN) {
        if (errno == EAGAIN) {
          struct pollfd p = {fd, POLLOUT, 0};
          poll(&p, 1, -1);
        }
        continue;
      }
      return 0;
    }
    while (n > 0 && (size_t)w >= v->iov_len) {
      w -= (ssize_t)v->iov_len;
      v++;
      n--;
    }
    if (n > 0) {
      v->iov_base = (char *)v->iov_base + w;
      v->iov_len -= (size_t)w;
    }
  }
  return 1;
}

static int clientGone; /* writing to stdout failed */

/* Sends to the server (main thread only); after it has gone the write just fails (EPIPE). */
static void sendServer(const char *text, size_t len, const unsigned char *data, size_t n) {
  struct iovec v[2] = {{(void *)text, len}, {(void *)data, n}};
  writeAll(sock, v, n > 0 ? 2 : 1);
}

/* Writes a reply to the client. */
static void answer(const Reply *r) {
  char head[2 * MAX_REPLY_LINE + 8];
  struct iovec v[2];
  int n = 1;
  if (!r->ok) {
    v[0].iov_len = (size_t)snprintf(head, sizeof head, "E%s\n%s\n", r->line, r->message);
  } else {
    v[0].iov_len = (size_t)snprintf(head, sizeof head, "A%s\n", r->line);
    if (r->data && r->value > 0) {
      v[1].iov_base = r->data;
      v[1].iov_len = (size_t)r->value;
      n = 2;
    }
  }
  v[0].iov_base = head;
  if (!clientGone && !writeAll(1, v, n)) {
    clientGone = 1; /* the client went away: the server closes the device */
    shutdown(sock, SHUT_WR);
  }
}

static void answerValue(long long value) {
  Reply r = {0};
  r.ok = 1;
  r.value = value;
  snprintf(r.line, sizeof r.line, "%lld", value);
  answer(&r);
}

/* ---- calls ------------------------------------------------------------------------------- */

/* Queues a call (under mu) and sends its text; the reply thread settles it. */
static Call *call(int kind, int data, const char *text, size_t len, const unsigned char *payload, size_t n) {
  Call *c = calloc(1, sizeof *c);
  if (!c) die("out of memory");
  c->kind = kind;
  c->data = data;
  pthread_mutex_lock(&mu);
  if (closed) {
    c->settled = c->failed = 1;
  } else {
    if (owedTail) owedTail->next = c;
    else owedHead = c;
    owedTail = c;
  }
  pthread_mutex_unlock(&mu);
  if (!c->failed) sendServer(text, len, payload, n);
  return c;
}

/* Waits for a call's reply; 0 if the connection was lost. The caller frees the call. */
static int await(Call *c) {
  pthread_mutex_lock(&mu);
  while (!c->settled) pthread_cond_wait(&cv, &mu);
  pthread_mutex_unlock(&mu);
  return !c->failed;
}

/* A plain command and its reply; 0 (and the call freed) if the connection was lost. */
static int roundTrip(const char *text, size_t len, int data, const unsigned char *payload, size_t n, Reply *out) {
  Call *c = call(PLAIN, data, text, len, payload, n);
  int ok = await(c);
  if (ok) {
    *out = c->r;
    c->r.data = NULL;
  }
  freeCall(c);
  return ok;
}

static int takeHeld(Reply *out) {
  pthread_mutex_lock(&mu);
  int h = haveHeld;
  if (h) *out = held;
  haveHeld = 0;
  pthread_mutex_unlock(&mu);
  return h;
}

static void holdLocked(const Reply *r) {
  if (haveHeld) return;
  held = *r;
  held.data = NULL;
  haveHeld = 1;
}

static int lost(void) {
  pthread_mutex_lock(&mu);
  int c = closed;
  pthread_mutex_unlock(&mu);
  return c;
}

/* Takes back the reads the client did not get; a failure is held for its command. */
static int undoReads(void) {
  pthread_mutex_lock(&mu);
  int k = aheadReads;
  for (Call *c = aheadHead, *next; c; c = next) {
    next = c->nextAhead;
    if (c->settled) freeCall(c);
    else c->discard = 1;
  }
  aheadHead = aheadTail = NULL;
  aheadReads = 0;
  reading = 0;
  pthread_mutex_unlock(&mu);
  char text[32];
  Reply r;
  if (!roundTrip(text, (size_t)snprintf(text, sizeof text, "U%d\n", k), 0, NULL, 0, &r)) return 0;
  if (!r.ok) {
    pthread_mutex_lock(&mu);
    holdLocked(&r);
    pthread_mutex_unlock(&mu);
  }
  return 1;
}

/* Before any command but W and R; 1 with *out set when the command must answer a held error. */
static int settle(Reply *out) {
  if (aheadReads > 0) undoReads();
  pthread_mutex_lock(&mu);
  while (aheadWrites > 0 && !closed) pthread_cond_wait(&cv, &mu);
  credit = 0;
  pthread_mutex_unlock(&mu);
  return takeHeld(out);
}

/* Keeps the read window full while reading. */
static void readAhead(void) {
  long long size = atoll(readLine);
  if (size < 1) size = 1;
  long long window = READ_WINDOW / size;
  if (window > MAX_READ_AHEAD) window = MAX_READ_AHEAD;
  if (window < 1) window = 1;
  pthread_mutex_lock(&mu);
  int skip = !reading || aheadReads > window / 2 || closed;
  pthread_mutex_unlock(&mu);
  if (skip) return;
  /* Refilled by halves: one write carries many requests, and the server reads them at once. */
  static char reqs[MAX_READ_AHEAD * (MAX_ARG + 2) + 1]; /* snprintf's terminator after the last */
  size_t len = 0;
  pthread_mutex_lock(&mu);
  while (aheadReads < window) {
    Call *c = calloc(1, sizeof *c);
    if (!c) die("out of memory");
    c->kind = READ_AHEAD;
    c->data = 1;
    if (owedTail) owedTail->next = c;
    else owedHead = c;
    owedTail = c;
    if (aheadTail) aheadTail->nextAhead = c;
    else aheadHead = c;
    aheadTail = c;
    aheadReads++;
    len += (size_t)snprintf(reqs + len, sizeof reqs - len, "R%s\n", readLine);
  }
  pthread_mutex_unlock(&mu);
  sendServer(reqs, len, NULL, 0);
}

/* ---- the reply thread -------------------------------------------------------------------- */

static Input fromServer;

static void relay(Input *from, int to) {
  if (from->len > from->at) {
    struct iovec v = {from->buf + from->at, from->len - from->at};
    writeAll(to, &v, 1);
    from->at = from->len;
  }
  while (fill(from)) {
    struct iovec v = {from->buf + from->at, from->len - from->at};
    if (!writeAll(to, &v, 1)) return;
    from->at = from->len;
  }
}

static long long creditOf(const char *line) {
  const char *p = line;
  while (*p == ' ' || *p == '\t') p++;
  if (*p == '-') p++;
  if (*p < '0' || *p > '9') return 0;
  while (*p >= '0' && *p <= '9') p++;
  if (*p != ' ' && *p != '\t') return 0;
  while (*p == ' ' || *p == '\t') p++;
  char *end;
  long long c = strtoll(p, &end, 10);
  while (*end == ' ' || *end == '\t') end++;
  return *end == 0 && c >= 0 ? c : 0;
}

/* Reads one reply into r; NULL or an error message. */
static const char *readReply(int letter, int data, Reply *r) {
  size_t got;
  int k = inLine(&fromServer, r->line, MAX_REPLY_LINE, &got);
  if (k <= 0) return k == 0 ? "the rmt server closed the connection inside a reply" : "the rmt server sent a reply line that is too long";
  if (letter == 'E') {
    r->ok = 0;
    k = inLine(&fromServer, r->message, MAX_REPLY_LINE, &got);
    if (k <= 0) return k == 0 ? "the rmt server closed the connection inside a reply" : "the rmt server sent a reply line that is too long";
    return NULL;
  }
  if (letter != 'A') return "the rmt server sent a bad reply";
  char *end;
  r->value = strtoll(r->line, &end, 10);
  if (end == r->line) return "the rmt server sent a bad reply";
  r->ok = 1;
  if (!data || r->value <= 0) return NULL;
  if (r->value > MAX_RECORD) return "the rmt server announced too many bytes of reply data";
  r->data = malloc((size_t)r->value);
  if (!r->data) die("out of memory");
  if (!inExact(&fromServer, r->data, (size_t)r->value)) return "the rmt server closed the connection inside a reply";
  return NULL;
}

/* A write ahead's reply: the credit it grants, or the error the next command answers. */
static void settleWriteAheadLocked(Call *c) {
  aheadBytes -= c->n;
  aheadWrites--;
  if (!c->r.ok) {
    holdLocked(&c->r);
    credit = 0;
  } else if (c->r.value != c->n) {
    Reply e = {0};
    snprintf(e.line, sizeof e.line, "5");
    snprintf(e.message, sizeof e.message, "Input/output error: the tape took %lld of %lld bytes of a buffered record", c->r.value, c->n);
    holdLocked(&e);
    credit = 0;
  } else {
    credit = creditOf(c->r.line);
  }
}

static const char *replyError;

static void *replies(void *arg) {
  (void)arg;
  for (;;) {
    int letter = inByte(&fromServer);
    if (letter < 0) break;
    pthread_mutex_lock(&mu);
    Call *c = owedHead;
    if (c) {
      owedHead = c->next;
      if (!owedHead) owedTail = NULL;
    }
    int isRaw = raw;
    pthread_mutex_unlock(&mu);
    if (!c) {
      if (!isRaw) {
        replyError = "the rmt server sent a reply nobody asked for";
        break;
      }
      unsigned char b = (unsigned char)letter;
      struct iovec v = {&b, 1};
      writeAll(1, &v, 1);
      relay(&fromServer, 1);
      break;
    }
    const char *bad = readReply(letter, c->data, &c->r);
    pthread_mutex_lock(&mu);
    if (bad) {
      c->failed = 1;
      replyError = bad;
    } else if (c->kind == WRITE_AHEAD) {
      settleWriteAheadLocked(c);
      c->discard = 1; /* nobody waits for one write ahead in particular */
    }
    c->settled = 1;
    if (c->discard) freeCall(c);
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
    if (bad) break;
  }
  pthread_mutex_lock(&mu);
  closed = 1;
  for (Call *c = owedHead, *next; c; c = next) {
    next = c->next;
    if (c->kind == WRITE_AHEAD) aheadWrites--, aheadBytes -= c->n;
    c->settled = c->failed = 1;
    if (c->kind == WRITE_AHEAD || c->discard) freeCall(c);
  }
  owedHead = owedTail = NULL;
  pthread_cond_broadcast(&cv);
  pthread_mutex_unlock(&mu);
  if (write(wakeFds[1], "x", 1) < 0) { /* the main thread stops reading the client */ }
  return NULL;
}

/* ---- commands ---------------------------------------------------------------------------- */

static Input fromClient;
/* The client's bytes of the command being parsed (relayed as they are if it cannot be). */
static char text[MAX_NAME + 2 * MAX_ARG + 16];
static size_t textLen;

static void addText(const char *s, size_t n) {
  if (textLen + n <= sizeof text) {
    memcpy(text + textLen, s, n);
    textLen += n;
  }
}

/* From the command's text on, relays the client's bytes as they are (after what is owed). */
static void relayRaw(void) {
  connectOnce(0);
  Reply h;
  if (settle(&h)) {
    answer(&h); /* the client is told of the failed write; what it sent after cannot be understood */
    return;
  }
  pthread_mutex_lock(&mu);
  raw = 1;
  pthread_mutex_unlock(&mu);
  sendServer(text, textLen, NULL, 0);
  relay(&fromClient, sock);
}

/* The next argument line (added to text): 1, 0 at the end of input, -1 relayed raw. */
static int arg(char *out, size_t max) {
  size_t got;
  int k = inLine(&fromClient, out, max, &got);
  addText(out, got);
  if (k == 1) addText("\n", 1);
  if (k < 0) relayRaw();
  return k;
}

static int isSpace(char c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

/* As /^\s*(\d{1,19})\s*$/. */
static int isNumber(const char *s, long long *v) {
  const char *p = s;
  while (isSpace(*p)) p++;
  const char *d = p;
  while (*p >= '0' && *p <= '9') p++;
  size_t digits = (size_t)(p - d);
  while (isSpace(*p)) p++;
  if (digits == 0 || digits > 19 || *p) return 0;
  *v = strtoll(d, NULL, 10);
  return 1;
}

/* Sends the command's text and answers the client with the server's reply. */
static int forwardText(int data) {
  Reply r;
  if (!settle(&r) && !roundTrip(text, textLen, data, NULL, 0, &r)) return 0;
  answer(&r);
  free(r.data);
  return 1;
}

/* A command whose reply the client waits for, after every outstanding reply. */
static int forward(int lines, int firstMax, int data) {
  char line[MAX_NAME + 1];
  for (int i = 0; i < lines; i++) {
    int k = arg(line, i == 0 ? (size_t)firstMax : MAX_ARG);
    if (k <= 0) return 0;
  }
  return forwardText(data);
}

/* The open's flags ask for writing: O_WRONLY or O_RDWR, as a number or by name. */
static int opensForWriting(const char *flags) {
  const char *p = flags;
  while (isSpace(*p)) p++;
  if (*p >= '0' && *p <= '9') return (strtol(p, NULL, 10) & 3) != 0;
  return strstr(flags, "O_WRONLY") != NULL || strstr(flags, "O_RDWR") != NULL;
}

/* O: the first command of a session, so the connection is made here (see connectOnce). */
static int openCommand(void) {
  char device[MAX_NAME + 1], flags[MAX_ARG + 1];
  if (arg(device, MAX_NAME) <= 0 || arg(flags, MAX_ARG) <= 0) return 0;
  connectOnce(opensForWriting(flags));
  return forwardText(0);
}

static int writeCommand(void) {
  char line[MAX_ARG + 1];
  int k = arg(line, MAX_ARG);
  if (k <= 0) return 0;
  long long n;
  /* A length the server will refuse and hang up on: let it, with the bytes as they are. */
  if (!isNumber(line, &n) || n > MAX_RECORD) {
    relayRaw();
    return 0;
  }
  unsigned char *data = n > 0 ? malloc((size_t)n) : NULL;
  if (n > 0 && !data) die("out of memory");
  if (!inExact(&fromClient, data, (size_t)n)) { /* a partial record is never written */
    free(data);
    return 0;
  }
  if (aheadReads > 0) undoReads();
  Reply r;
  if (takeHeld(&r)) {
    answer(&r);
  } else if (!extended || n == 0) {
    char head[MAX_ARG + 4];
    if (!roundTrip(head, (size_t)snprintf(head, sizeof head, "W%s\n", line), 0, data, (size_t)n, &r)) goto gone;
    answer(&r);
  } else {
    pthread_mutex_lock(&mu);
    while (aheadWrites > 0 && aheadBytes + n > credit && !closed) pthread_cond_wait(&cv, &mu);
    /* Decided under the lock: a write ahead that failed meanwhile is answered instead. */
    int heldNow = haveHeld;
    if (heldNow) {
      r = held;
      haveHeld = 0;
    }
    int room = !heldNow && aheadBytes + n <= credit && !closed;
    if (room) {
      Call *c = calloc(1, sizeof *c);
      if (!c) die("out of memory");
      c->kind = WRITE_AHEAD;
      c->n = n;
      if (owedTail) owedTail->next = c;
      else owedHead = c;
      owedTail = c;
      aheadBytes += n;
      aheadWrites++;
    }
    pthread_mutex_unlock(&mu);
    char head[32];
    size_t hl = (size_t)snprintf(head, sizeof head, "w%lld\n", n);
    if (heldNow) {
      answer(&r);
    } else if (room) {
      sendServer(head, hl, data, (size_t)n);
      answerValue(n);
    } else {
      if (!roundTrip(head, hl, 0, data, (size_t)n, &r)) goto gone;
      pthread_mutex_lock(&mu);
      credit = r.ok ? creditOf(r.line) : 0;
      pthread_mutex_unlock(&mu);
      if (r.ok) answerValue(r.value);
      else answer(&r);
    }
  }
  free(data);
  return 1;
gone:
  free(data);
  return 0;
}

static int readCommand(void) {
  char line[MAX_ARG + 1];
  int k = arg(line, MAX_ARG);
  if (k <= 0) return 0;
  if (aheadReads > 0 && strcmp(line, readLine) == 0) {
    pthread_mutex_lock(&mu);
    Call *c = aheadHead;
    aheadHead = c->nextAhead;
    if (!aheadHead) aheadTail = NULL;
    aheadReads--;
    while (!c->settled) pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
    if (c->failed) {
      freeCall(c);
      return 0;
    }
    answer(&c->r);
    /* Past a filemark, end of data or an error the client will most likely stop reading. */
    if (!(c->r.ok && c->r.value > 0)) reading = 0;
    freeCall(c);
    readAhead();
    return 1;
  }
  Reply r;
  if (settle(&r)) {
    answer(&r);
    return 1;
  }
  char head[MAX_ARG + 4];
  if (!roundTrip(head, (size_t)snprintf(head, sizeof head, "R%s\n", line), 1, NULL, 0, &r)) return 0;
  answer(&r);
  long long n;
  if (extended && r.ok && r.value > 0 && isNumber(line, &n)) {
    snprintf(readLine, sizeof readLine, "%s", line);
    reading = 1;
    free(r.data);
    readAhead();
    return 1;
  }
  free(r.data);
  return 1;
}

/* Runs one command; 0 when the input ended inside it (or it was relayed raw). */
static int command(int letter) {
  char c = (char)letter;
  textLen = 0;
  addText(&c, 1);
  if (letter != 'O') connectOnce(0);
  switch (letter) {
    case '\n': /* a stray newline (newer clients end S with one): the server skips it */
      sendServer("\n", 1, NULL, 0);
      return 1;
    case 'W':
      return writeCommand();
    case 'R':
      return readCommand();
    case 'S':
      return forward(0, 0, 1);
    case 'C':
    case 'v':
      return forward(1, MAX_ARG, 0);
    case 'O':
      return openCommand();
    case 'I':
    case 'L':
    case 'i':
      return forward(2, MAX_ARG, 0);
    case 's': {
      int sub = inByte(&fromClient);
      if (sub < 0) return 0;
      char b = (char)sub;
      addText(&b, 1);
      return forward(0, 0, 0);
    }
    default:
      relayRaw();
      return 0;
  }
}

/* ---- start ------------------------------------------------------------------------------- */

static char serverHost[512] = "127.0.0.1", serverPort[16] = "7421";
static int connected;
static pthread_t replyThread;

static void parseAddress(const char *address) {
  const char *colon;
  if (address[0] == '[') {
    const char *close = strchr(address, ']');
    if (!close || (close[1] && close[1] != ':')) die("bad rmt server address \"%s\": expected HOST:PORT", address);
    snprintf(serverHost, sizeof serverHost, "%.*s", (int)(close - address - 1), address + 1);
    if (close[1] == ':') snprintf(serverPort, sizeof serverPort, "%s", close + 2);
  } else if ((colon = strrchr(address, ':'))) {
    if (colon > address) snprintf(serverHost, sizeof serverHost, "%.*s", (int)(colon - address), address);
    snprintf(serverPort, sizeof serverPort, "%s", colon + 1);
  } else if (address[0]) {
    snprintf(serverHost, sizeof serverHost, "%s", address);
  }
  long long p;
  if (!isNumber(serverPort, &p) || p < 1 || p > 65535) die("bad rmt server address \"%s\": expected HOST:PORT", address);
}

/*
 * A server on this host also listens on an abstract Unix socket (Linux). Over it this process
 * spends about half the CPU per byte that loopback TCP costs it, and the server less too: on 2
 * cores, tar writing 1.64 GB through rmt gained 3-23% in six alternating pairs. Only for
 * writing: the server's side of a Unix socket keeps the system's default send buffer (Node
 * cannot size it), about 200 KiB against loopback TCP's autotuned megabytes, and reads over it
 * were 10% slower.
 *
 * Its name is random, and the server tells it in the answer to a version-2 hello over TCP:
 * abstract names have no permissions, so a name a client could guess could be taken first by
 * another process, which would then receive the backups.
 */

/* Reads a line from `fd` byte by byte (nothing past it may be read); 0 if none comes. */
static int restOfLine(int fd, char *line, size_t max) {
  for (size_t n = 0; n < max; n++) {
    ssize_t k;
    do k = read(fd, line + n, 1);
    while (k < 0 && errno == EINTR);
    if (k != 1) return 0;
    if (line[n] == '\n') {
      line[n] = 0;
      return 1;
    }
  }
  return 0;
}

/* Sends the hello on `fd` and reads the first line of the answer. */
static int helloLine(int fd, char *line, size_t max) {
  char hello[16];
  struct iovec v = {hello, (size_t)snprintf(hello, sizeof hello, "B%d\n", BRIDGE_VERSION)};
  return writeAll(fd, &v, 1) && restOfLine(fd, line, max);
}

/* A connection to the abstract socket `name`, or -1. */
static int connectAbstract(const char *name) {
#ifdef __linux__
  struct sockaddr_un a = {0};
  a.sun_family = AF_UNIX;
  size_t n = strlen(name);
  if (n + 1 > sizeof a.sun_path) return -1;
  memcpy(a.sun_path + 1, name, n);
  /* An abstract name is all of its length: libuv (Node 20) binds it padded with NULs to the
   * whole sun_path, other servers with its exact length. Try both. */
  socklen_t lengths[2] = {(socklen_t)sizeof a, (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + n)};
  for (int i = 0; i < 2; i++) {
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    if (connect(fd, (struct sockaddr *)&a, lengths[i]) == 0) {
      int bytes = 4 << 20; /* the records this process writes ahead: as many as TCP holds */
      setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &bytes, sizeof bytes);
      return fd;
    }
    close(fd);
  }
#else
  (void)name;
#endif
  return -1;
}

/*
 * Greets a server on this host over TCP; where it names its local socket, moves the connection
 * there. 1 if the connection in use has been greeted (`extended` is set), 0 if not yet.
 */
static int moveToLocal(void) {
  if (strcmp(serverHost, "127.0.0.1") && strcmp(serverHost, "localhost") && strcmp(serverHost, "::1")) return 0;
  char line[MAX_REPLY_LINE + 1];
  if (!helloLine(sock, line, sizeof line - 1)) return 0;
  if (line[0] == 'E') { /* a refusal has its message line too: read it, the next reply follows */
    restOfLine(sock, line, sizeof line - 1);
    return 1;
  }
  extended = line[0] == 'A' && atoi(line + 1) >= 1;
  const char *name = strchr(line, ' ');
  if (!extended || !name || strncmp(name + 1, "vtl-rmt-", 8)) return 1;
  int fd = connectAbstract(name + 1);
  if (fd < 0) return 1;
  close(sock); /* the server's session on it ends with the hello */
  sock = fd;
  return 0;
}

static void connectTcp(void) {
  struct addrinfo hints = {0}, *res;
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  int e = getaddrinfo(serverHost, serverPort, &hints, &res);
  if (e) die("cannot reach the vtl rmt server at %s:%s: %s", serverHost, serverPort, gai_strerror(e));
  int err = 0;
  for (struct addrinfo *a = res; a; a = a->ai_next) {
    int fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) continue;
    if (connect(fd, a->ai_addr, a->ai_addrlen) == 0) {
      int one = 1;
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      sock = fd;
      break;
    }
    err = errno;
    close(fd);
  }
  freeaddrinfo(res);
  if (sock < 0) die("cannot reach the vtl rmt server at %s:%s: %s", serverHost, serverPort, strerror(err));
}

static void initInput(Input *in, int fd, int wake);

/*
 * Connects at the client's first command, before anything is owed, so that an open picks the
 * transport by its flags (`local`: writing); then starts the reply thread and greets the server.
 */
static void connectOnce(int local) {
  if (connected) return;
  connected = 1;
  connectTcp();
  int greeted = local && moveToLocal();
  initInput(&fromServer, sock, -1);
  if (pthread_create(&replyThread, NULL, replies, NULL)) die("cannot start a thread");
  if (greeted) return;
  Reply r;
  char hello[16];
  if (roundTrip(hello, (size_t)snprintf(hello, sizeof hello, "B%d\n", BRIDGE_VERSION), 0, NULL, 0, &r)) {
    extended = r.ok && r.value >= 1;
    free(r.data);
  }
}

static void blocking(int fd) {
  int fl = fcntl(fd, F_GETFL);
  if (fl >= 0 && (fl & O_NONBLOCK)) fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
}

/*
 * Linux gives a pipe 64 KiB: a client reading 64 KiB records then waits on this process for
 * every record, and tar alone reads twice as fast from a 1 MiB pipe (bench/rmt-tar-ceiling.c).
 * Best effort: not a pipe, or past the user's pipe quota, keeps what the pipe has.
 */
static void widenPipe(int fd) {
#ifdef F_SETPIPE_SZ
  if (fcntl(fd, F_GETPIPE_SZ) < PIPE_BYTES) (void)fcntl(fd, F_SETPIPE_SZ, PIPE_BYTES);
#else
  (void)fd;
#endif
}

static void initInput(Input *in, int fd, int wake) {
  in->fd = fd;
  in->wake = wake;
  in->cap = MAX_RECORD + 256 * 1024;
  in->buf = malloc(in->cap);
  if (!in->buf) die("out of memory");
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: vtl-rmt-bridge HOST:PORT\n");
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  /* Records are malloc'd and freed one after another: keep the heap instead of handing it back
   * to the kernel and faulting it in again for every record. */
  mallopt(M_MMAP_THRESHOLD, 4 * MAX_RECORD);
  mallopt(M_TRIM_THRESHOLD, 64 * MAX_RECORD);
  blocking(0);
  blocking(1);
  widenPipe(0);
  widenPipe(1);
  parseAddress(argv[1]);
  if (pipe2(wakeFds, O_CLOEXEC) < 0) die("pipe: %s", strerror(errno));
  initInput(&fromClient, 0, wakeFds[0]);

  Reply r;
  int ended = 0;
  while (!ended && !clientGone) {
    int c = inByte(&fromClient);
    if (c < 0) break;
    if (!command(c)) break;
    ended = lost();
  }
  if (!connected) return 0; /* the client sent nothing */
  /* The client is gone: what it wrote is stored and the position is where it left it. */
  if (!raw && !lost()) settle(&r);
  shutdown(sock, SHUT_WR);
  pthread_join(replyThread, NULL);
  if (replyError) die("%s", replyError);
  return 0;
}
