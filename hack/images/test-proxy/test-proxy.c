// A stand-in sidecar proxy for tests and the demo on a real node: answers every TCP
// connection with one JSON line naming the port it was accepted on and the connection's
// original destination (SO_ORIGINAL_DST, which Node cannot read), then closes it.
//
//   test-proxy                      listen on 15001 and 15006 (IPv4 and IPv6)
//   test-proxy listen PORT...       listen on the given ports instead
//   test-proxy connect ADDR PORT    connect, print the line received (exit 1 on failure)
//   test-proxy connect-as UID ADDR PORT   setuid(UID) first (exit 3 when refused): what a
//                                   root container keeping CAP_SETUID can do to take the proxy's UID
//
// Static, no libc name resolution: the image holds this one file.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/netfilter_ipv4.h>
#include <linux/netfilter_ipv6/ip6_tables.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#define MAX_LISTENERS 32

static void format_addr(const struct sockaddr_storage *ss, char *out, size_t size) {
  char ip[INET6_ADDRSTRLEN] = "?";
  if (ss->ss_family == AF_INET) {
    const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
    inet_ntop(AF_INET, &a->sin_addr, ip, sizeof ip);
    snprintf(out, size, "%s:%u", ip, ntohs(a->sin_port));
  } else {
    const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
    inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof ip);
    snprintf(out, size, "[%s]:%u", ip, ntohs(a->sin6_port));
  }
}

static int parse_port(const char *text) {
  char *end;
  long port = strtol(text, &end, 10);
  if (*text == '\0' || *end != '\0' || port < 1 || port > 65535) {
    fprintf(stderr, "test-proxy: bad port %s\n", text);
    exit(2);
  }
  return (int)port;
}

static int listen_on(int family, int port) {
  int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  struct sockaddr_storage ss = {0};
  socklen_t len;
  if (fd < 0) return -1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (family == AF_INET6) {
    // Separate IPv4 and IPv6 sockets: SO_ORIGINAL_DST is per address family.
    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
    a->sin6_family = AF_INET6;
    a->sin6_addr = in6addr_any;
    a->sin6_port = htons(port);
    len = sizeof *a;
  } else {
    struct sockaddr_in *a = (struct sockaddr_in *)&ss;
    a->sin_family = AF_INET;
    a->sin_addr.s_addr = htonl(INADDR_ANY);
    a->sin_port = htons(port);
    len = sizeof *a;
  }
  if (bind(fd, (struct sockaddr *)&ss, len) < 0 || listen(fd, 128) < 0) {
    close(fd);
    return -1;
  }
  return fd;
}

static void answer(int listener_fd, int port) {
  struct sockaddr_storage peer, original;
  socklen_t peer_len = sizeof peer, original_len = sizeof original;
  char peer_text[64], original_text[64], line[200];
  int fd = accept4(listener_fd, (struct sockaddr *)&peer, &peer_len, SOCK_CLOEXEC);
  if (fd < 0) return;
  int failed = peer.ss_family == AF_INET6
                   ? getsockopt(fd, SOL_IPV6, IP6T_SO_ORIGINAL_DST, &original, &original_len)
                   : getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, &original, &original_len);
  // Not NATed (a direct connection): the original destination is our own address.
  if (failed) {
    original_len = sizeof original;
    getsockname(fd, (struct sockaddr *)&original, &original_len);
  }
  format_addr(&peer, peer_text, sizeof peer_text);
  format_addr(&original, original_text, sizeof original_text);
  int n = snprintf(line, sizeof line, "{\"listener\":%d,\"original\":\"%s\",\"peer\":\"%s\"}\n", port, original_text,
                   peer_text);
  // A short line on a fresh socket: one write fits the send buffer.
  if (write(fd, line, (size_t)n) < 0) perror("test-proxy: write");
  close(fd);
}

static int serve(int count, char **ports) {
  struct pollfd fds[MAX_LISTENERS];
  int port_of[MAX_LISTENERS], n = 0;
  if (count * 2 > MAX_LISTENERS) {
    fprintf(stderr, "test-proxy: at most %d ports\n", MAX_LISTENERS / 2);
    return 2;
  }
  for (int i = 0; i < count; i++) {
    int port = parse_port(ports[i]);
    int v4 = listen_on(AF_INET, port), v6 = listen_on(AF_INET6, port);
    if (v4 < 0 && v6 < 0) {
      fprintf(stderr, "test-proxy: cannot listen on port %d: %s\n", port, strerror(errno));
      return 1;
    }
    // A pod without IPv6 still serves IPv4.
    if (v4 >= 0) fds[n] = (struct pollfd){.fd = v4, .events = POLLIN}, port_of[n++] = port;
    if (v6 >= 0) fds[n] = (struct pollfd){.fd = v6, .events = POLLIN}, port_of[n++] = port;
    fprintf(stderr, "test-proxy: listening on port %d (%s%s)\n", port, v4 >= 0 ? "ipv4 " : "", v6 >= 0 ? "ipv6" : "");
  }
  for (;;) {
    if (poll(fds, (nfds_t)n, -1) < 0) {
      if (errno == EINTR) continue;
      perror("test-proxy: poll");
      return 1;
    }
    for (int i = 0; i < n; i++)
      if (fds[i].revents & POLLIN) answer(fds[i].fd, port_of[i]);
  }
}

static int connect_to(const char *address, const char *port_text) {
  struct sockaddr_storage ss = {0};
  socklen_t len;
  struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
  struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
  int port = parse_port(port_text);
  if (inet_pton(AF_INET, address, &a4->sin_addr) == 1) {
    a4->sin_family = AF_INET;
    a4->sin_port = htons(port);
    len = sizeof *a4;
  } else if (inet_pton(AF_INET6, address, &a6->sin6_addr) == 1) {
    a6->sin6_family = AF_INET6;
    a6->sin6_port = htons(port);
    len = sizeof *a6;
  } else {
    fprintf(stderr, "test-proxy: %s is not an IP address\n", address);
    return 2;
  }
  int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct timeval timeout = {.tv_sec = 5};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
  if (fd < 0 || connect(fd, (struct sockaddr *)&ss, len) < 0) {
    // SO_SNDTIMEO bounds connect too; it then fails with EINPROGRESS.
    fprintf(stderr, "test-proxy: connect %s port %d: %s\n", address, port,
            errno == EINPROGRESS ? "timed out after 5 s" : strerror(errno));
    return 1;
  }
  char buffer[512];
  ssize_t got, total = 0;
  while ((got = read(fd, buffer, sizeof buffer)) > 0) {
    fwrite(buffer, 1, (size_t)got, stdout);
    total += got;
  }
  close(fd);
  if (got < 0 || total == 0) {
    fprintf(stderr, "test-proxy: no answer from %s port %d%s%s\n", address, port, got < 0 ? ": " : "",
            got < 0 ? strerror(errno) : "");
    return 1;
  }
  return 0;
}

static void on_term(int signal_number) { _exit(128 + signal_number); }

int main(int argc, char **argv) {
  signal(SIGPIPE, SIG_IGN);
  // As a container's PID 1 a signal without a handler is ignored: pods would wait out their grace period.
  signal(SIGTERM, on_term);
  signal(SIGINT, on_term);
  if (argc == 1) {
    char *defaults[] = {"15001", "15006"};
    return serve(2, defaults);
  }
  if (strcmp(argv[1], "listen") == 0 && argc > 2) return serve(argc - 2, argv + 2);
  if (strcmp(argv[1], "connect") == 0 && argc == 4) return connect_to(argv[2], argv[3]);
  if (strcmp(argv[1], "connect-as") == 0 && argc == 5) {
    char *end;
    errno = 0;
    unsigned long uid = strtoul(argv[2], &end, 10);
    if (errno != 0 || *end != '\0' || end == argv[2] || uid > 0xfffffffeUL) {
      fprintf(stderr, "test-proxy: %s is not a UID\n", argv[2]);
      return 2;
    }
    if (setuid((uid_t)uid) != 0) {
      fprintf(stderr, "test-proxy: setuid %lu: %s\n", uid, strerror(errno));
      return 3;
    }
    return connect_to(argv[3], argv[4]);
  }
  fprintf(stderr, "usage: test-proxy [listen PORT... | connect ADDR PORT | connect-as UID ADDR PORT]\n");
  return 2;
}
