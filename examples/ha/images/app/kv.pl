#!/usr/bin/perl
# kv: a key-value HTTP service on PostgreSQL (through the proxy only).
#   GET  /healthz        200 "db: ok" when a write transaction succeeds, 503 "db: down ..." otherwise
#   POST /kv             JSON {"key": K, "value": V}: 201 {"key": K, "stored": true}; 409 if K exists
#   GET  /kv/K           200 {"key": K, "value": V, "stored_at": T}; 404 if absent
# Configuration: DB_HOST, DB_PORT, DB_NAME, DB_USER, DB_PASSWORD_FILE (read at every (re)connect,
# so a rotated password is used as soon as the old session goes; SIGHUP drops the session now).
# Logs: logfmt on stdout, one line per request (ts=... level=info|warn|error msg=...).
use strict;
use warnings;
use DBI;
use HTTP::Daemon;
use HTTP::Response;
use JSON::PP;
use POSIX qw(strftime);
use Time::HiRes qw(time);

$| = 1;
my %cfg = (
    host => $ENV{DB_HOST} // 'proxy',
    port => $ENV{DB_PORT} // 5432,
    name => $ENV{DB_NAME} // 'ha',
    user => $ENV{DB_USER} // 'app',
    pwfile => $ENV{DB_PASSWORD_FILE} // '/run/secrets/db_password',
    listen => $ENV{LISTEN_PORT} // 9000,
);
my $json = JSON::PP->new->canonical;
my $dbh;
my $reload = 0;
my $down_until = 0;    # after a failed connect, answer 503 at once for 1 s (fail fast)
$SIG{HUP} = sub { $reload = 1 };
$SIG{PIPE} = 'IGNORE';    # a client that hung up early must not kill the service
$SIG{TERM} = sub { logf('info', 'stopping'); exit 0 };

sub ts { my $t = time; strftime('%Y-%m-%dT%H:%M:%S', gmtime $t) . sprintf('.%03dZ', ($t - int $t) * 1000) }

sub logf {
    my ($level, $msg, %kv) = @_;
    my $line = sprintf 'ts=%s level=%s msg="%s"', ts(), $level, $msg =~ s/["\n]/ /gr;
    $line .= " $_=" . ($kv{$_} =~ /\s/ ? "\"$kv{$_}\"" : $kv{$_}) for sort keys %kv;
    print "$line\n";
}

sub password {
    open my $fh, '<', $cfg{pwfile} or die "cannot read the password file $cfg{pwfile}: $!\n";
    my $pw = <$fh> // '';
    chomp $pw;
    return $pw;
}

sub db {
    if ($reload) {
        $reload = 0;
        logf('info', 'SIGHUP: reconnecting with the password file');
        $dbh->disconnect if $dbh;
        undef $dbh;
    }
    return $dbh if $dbh && $dbh->ping > 0;
    $dbh->disconnect if $dbh;
    undef $dbh;
    die "database unreachable (backing off)\n" if time < $down_until;
    my $dsn = "dbi:Pg:dbname=$cfg{name};host=$cfg{host};port=$cfg{port};"
      . "connect_timeout=2;options=-cstatement_timeout=3000;"
      # a session whose packets vanish (a partition) fails within 1 s instead of TCP's minutes
      . "tcp_user_timeout=1000;keepalives=1;keepalives_idle=2;keepalives_interval=1;keepalives_count=2";
    $dbh = eval {
        DBI->connect($dsn, $cfg{user}, password(),
            { RaiseError => 1, PrintError => 0, AutoCommit => 1, pg_server_prepare => 0 });
    };
    if (!$dbh) {
        $down_until = time + 1;
        die $@;
    }
    logf('info', 'connected', db_host => $cfg{host});
    return $dbh;
}

sub answer {
    my ($code, $type, $body) = @_;
    my $r = HTTP::Response->new($code);
    $r->header('Content-Type' => $type);
    $r->content($body);
    return $r;
}

sub handle {
    my ($req) = @_;
    my ($m, $path) = ($req->method, $req->uri->path);
    if ($m eq 'GET' && $path eq '/healthz') {
        my $h = db();
        $h->do('BEGIN');
        my ($ro) = $h->selectrow_array('SELECT pg_is_in_recovery()');
        $h->do('ROLLBACK');
        return $ro ? answer(503, 'text/plain', "db: read-only\n") : answer(200, 'text/plain', "db: ok\n");
    }
    if ($m eq 'POST' && $path eq '/kv') {
        my $in = eval { $json->decode($req->content) };
        return answer(400, 'application/json', '{"error":"body is not JSON"}')
          unless ref $in eq 'HASH' && defined $in->{key} && defined $in->{value} && !ref $in->{value};
        my $n = db()->do('INSERT INTO entries (key, value) VALUES (?, ?) ON CONFLICT DO NOTHING',
            undef, "$in->{key}", "$in->{value}");
        return answer(409, 'application/json', $json->encode({key => "$in->{key}", error => 'exists'}))
          if $n == 0;
        return answer(201, 'application/json', $json->encode({key => "$in->{key}", stored => JSON::PP::true}));
    }
    if ($m eq 'GET' && $path =~ m{^/kv/([^/]+)$}) {
        my $key = $1;
        $key =~ s/%([0-9A-Fa-f]{2})/chr hex $1/ge;
        my $row = db()->selectrow_hashref(
            q{SELECT key, value, to_char(stored_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS stored_at
              FROM entries WHERE key = ?}, undef, $key);
        return answer(404, 'application/json', '{"error":"no such key"}') unless $row;
        return answer(200, 'application/json', $json->encode($row));
    }
    return answer(404, 'application/json', '{"error":"no such route"}');
}

my $d = HTTP::Daemon->new(LocalPort => $cfg{listen}, ReuseAddr => 1, Listen => 64)
  or die "cannot listen on $cfg{listen}: $!\n";
logf('info', 'listening', port => $cfg{listen}, db_host => $cfg{host});
while (1) {
    my $c = $d->accept or next;    # EINTR (SIGHUP) returns undef: go on
    $c->timeout(5);
    while (my $req = $c->get_request) {
        my $t0 = time;
        my $res = eval { handle($req) };
        if (!$res) {
            my $err = $@ =~ s/\s+$//r;
            $err =~ s/password\S*/password=***/gi;
            logf('error', 'database error', path => $req->uri->path, error => $err);
            $dbh = undef;
            $res = answer(503, 'text/plain', "db: down\n");
        }
        my $level = $res->code >= 500 ? 'error' : 'info';
        logf($level, 'request', method => $req->method, path => $req->uri->path,
            status => $res->code, ms => sprintf('%.1f', (time - $t0) * 1000));
        $res->header(Connection => "close");
        eval { $c->send_response($res) };
        last;    # one request per connection: a slow client never holds the others back
    }
    $c->close;
}
