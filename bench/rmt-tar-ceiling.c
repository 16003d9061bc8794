/*
 * The tar client ceiling of bench/rmt.bench.ts: an rmt server that an rsh wrapper execs in
 * place of `vtl rmt`, so that it speaks to tar over tar's own pipes (no bridge, no TCP, no
 * store). It holds one tape file (an archive tar wrote with the same blocking factor) mapped
 * in memory as records of RECORD bytes and answers what tar sends when reading it (O, R, S,
 * I, L, C). Whatever vtl does behind its drives, tar reading through rmt cannot go faster
 * than this on the same machine.
 *
 * Environment: TAPE (the archive), RECORD (bytes per record), PIPE_BYTES (when set, the size
 * the pipe to tar is given with F_SETPIPE_SZ, as a C bridge could; Linux's default is 64 KiB).
 * Build: cc -O2 -o rmt-tar-ceiling rmt-tar-ceiling.c
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

static unsigned char in[65536];
static ssize_t inLen, inAt;

/* The next byte from tar, or -1 at the end of its input. */
static int next_byte(void) {
  if (inAt >= inLen) {
    inLen = read(0, in, sizeof in);
    inAt = 0;
    if (inLen <= 0) return -1;
  }
  return in[inAt++];
}

/* An argument line (truncated to the buffer); 0 at the end of input. */
static int next_line(char *line, size_t size) {
  size_t n = 0;
  for (;;) {
    int c = next_byte();
    if (c < 0) return 0;
    if (c == '\n') break;
    if (n + 1 < size) line[n++] = (char)c;
  }
  line[n] = 0;
  return 1;
}

/* Writes every byte of the vector, however the pipe splits it. */
static void write_all(struct iovec *v, int n) {
  while (n > 0) {
    ssize_t w = writev(1, v, n);
    if (w < 0) exit(1);
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
}

static void reply(const char *text) {
  struct iovec v = {(void *)text, strlen(text)};
  write_all(&v, 1);
}

int main(void) {
  const char *path = getenv("TAPE"), *record = getenv("RECORD"), *pipeBytes = getenv("PIPE_BYTES");
  if (!path || !record) {
    fprintf(stderr, "rmt-tar-ceiling: set TAPE and RECORD\n");
    return 2;
  }
  int fd = open(path, O_RDONLY);
  struct stat st;
  if (fd < 0 || fstat(fd, &st) < 0) {
    perror(path);
    return 2;
  }
  const unsigned char *tape = st.st_size > 0 ? mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED | MAP_POPULATE, fd, 0) : NULL;
  if (tape == MAP_FAILED) {
    perror(path);
    return 2;
  }
  if (pipeBytes && *pipeBytes && fcntl(1, F_SETPIPE_SZ, atoi(pipeBytes)) < 0) perror("F_SETPIPE_SZ");
  long long pos = 0, size = st.st_size, recordBytes = atoll(record);
  char line[256], head[32];
  for (int c; (c = next_byte()) >= 0;) {
    switch (c) {
      case '\n': /* a stray newline after S */
        break;
      case 'O':
        if (!next_line(line, sizeof line) || !next_line(line, sizeof line)) return 0;
        pos = 0;
        reply("A0\n");
        break;
      case 'R': {
        if (!next_line(line, sizeof line)) return 0;
        long long n = atoll(line);
        if (n > recordBytes) n = recordBytes;
        if (n > size - pos) n = size - pos;
        if (n < 0) n = 0;
        struct iovec v[2] = {{head, (size_t)snprintf(head, sizeof head, "A%lld\n", n)}, {(void *)(tape + pos), (size_t)n}};
        write_all(v, n > 0 ? 2 : 1);
        pos += n;
        break;
      }
      case 'S': {
        static char status[4 + 48] = "A48\n";
        struct iovec v = {status, sizeof status};
        write_all(&v, 1);
        break;
      }
      case 'I':
      case 'L':
        if (!next_line(line, sizeof line) || !next_line(line, sizeof line)) return 0;
        reply("A0\n");
        break;
      case 'C':
        if (!next_line(line, sizeof line)) return 0;
        reply("A0\n");
        break;
      default:
        reply("E22\nInvalid argument\n");
        return 1;
    }
  }
  return 0;
}
