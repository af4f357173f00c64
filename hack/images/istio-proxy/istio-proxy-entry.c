// Entrypoint of the Istio proxy stand-in image (localhost/pod-network-controller/istio-proxy).
// Istio's injector gives the proxy image's containers arguments only, for the image's
// pilot-agent entrypoint; this runs them as that image would, with the stand-in proxy in
// place of Envoy:
//
//   proxy ...   (istio-proxy)  the stand-in proxy (test-proxy: 15001, 15006) as a child, and
//               HTTP 200 on 15021 for Istio's startup and readiness probes (/healthz/ready)
//               once the proxy accepts on 15001, as Envoy's readiness follows its listeners
//   other       Istio's real pilot-agent with the same arguments (istio-validation:
//               `istio-iptables ... --run-validation --skip-rule-apply`)
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define PILOT_AGENT "/usr/local/bin/pilot-agent"
#define TEST_PROXY "/usr/local/bin/test-proxy"
#define HEALTH_PORT 15021
#define OUTBOUND_PORT 15001

static volatile sig_atomic_t term_signal;
static void on_term(int signal_number) { term_signal = signal_number; }

// Whether the stand-in proxy accepts on 15001 (loopback to 127.0.0.1 is never redirected).
static int proxy_listening(void) {
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(OUTBOUND_PORT), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int ok = fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
  if (fd >= 0) close(fd);
  return ok;
}

static void answer_health(int listener) {
  char request[1024];
  int fd = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
  if (fd < 0) return;
  struct timeval timeout = {.tv_sec = 2};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  // One read holds a probe's request line; the path is not checked (the kubelet asks one).
  if (read(fd, request, sizeof request) > 0) {
    const char *response = proxy_listening() ? "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                                             : "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    if (write(fd, response, strlen(response)) < 0) perror("istio-proxy-entry: write");
  }
  close(fd);
}

static int run_proxy(void) {
  struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_port = htons(HEALTH_PORT), .sin6_addr = in6addr_any};
  int zero = 0, one = 1, status;
  int listener = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (listener < 0) {
    // An IPv4-only pod (IPv6 disabled in its netns).
    struct sockaddr_in a4 = {.sin_family = AF_INET, .sin_port = htons(HEALTH_PORT), .sin_addr.s_addr = htonl(INADDR_ANY)};
    listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (listener < 0 || bind(listener, (struct sockaddr *)&a4, sizeof a4) < 0) goto fail;
  } else {
    setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    setsockopt(listener, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
    if (bind(listener, (struct sockaddr *)&a, sizeof a) < 0) goto fail;
  }
  if (listen(listener, 16) < 0) goto fail;

  struct sigaction action = {.sa_handler = on_term};
  sigaction(SIGTERM, &action, NULL);
  sigaction(SIGINT, &action, NULL);
  pid_t child = fork();
  if (child < 0) goto fail;
  if (child == 0) {
    close(listener);
    execl(TEST_PROXY, TEST_PROXY, (char *)NULL);
    perror("istio-proxy-entry: exec " TEST_PROXY);
    _exit(127);
  }
  fprintf(stderr, "istio-proxy-entry: stand-in proxy (pid %d) on 15001/15006, health on %d\n", (int)child, HEALTH_PORT);
  // Until the proxy exits or we are told to stop (PID 1: only handled signals arrive).
  for (;;) {
    if (term_signal) kill(child, SIGTERM);
    pid_t done = waitpid(child, &status, WNOHANG);
    if (done == child) return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    struct pollfd p = {.fd = listener, .events = POLLIN};
    if (poll(&p, 1, 100) > 0) answer_health(listener);
  }
fail:
  perror("istio-proxy-entry: health port 15021");
  return 1;
}

int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "proxy") == 0) return run_proxy();
  argv[0] = PILOT_AGENT;
  execv(PILOT_AGENT, argv);
  perror("istio-proxy-entry: exec " PILOT_AGENT);
  return 127;
}
