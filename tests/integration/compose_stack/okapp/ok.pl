# A one-line-per-request HTTP server: every request answers 200 "OK".
use strict;
use warnings;
use IO::Socket::INET;
$SIG{TERM} = sub { exit 0 };
my $server = IO::Socket::INET->new(LocalPort => 8000, Listen => 64, ReuseAddr => 1)
  or die "listen: $!";
$| = 1;
print "ok.pl listening on 8000\n";
while (my $client = $server->accept) {
    $client->timeout(2);
    while (defined(my $line = <$client>)) { last if $line =~ /^\r?\n$/ }
    print $client "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nOK\n";
    close $client;
}
