#!/usr/bin/perl
# GET /<file> answers the file under the root folder (argv[1], default /www), 404 otherwise.
use strict;
use warnings;
use IO::Socket::INET;

my $port = $ENV{PORT} || 8000;
my $root = $ARGV[0] || '/www';
my $srv = IO::Socket::INET->new(LocalAddr => "0.0.0.0:$port", Listen => 16, ReuseAddr => 1)
    or die "listen on $port: $!";
$| = 1;
print "listening on $port\n";
while (my $c = $srv->accept) {
    my $line = <$c> // '';
    while (my $h = <$c>) { last if $h =~ /^\r?\n$/ }
    my ($path) = $line =~ m{^GET (/[A-Za-z0-9_./-]*)};
    my $file = (defined $path && $path !~ /\.\./) ? "$root$path" : '';
    if ($file ne '' && -f $file && open(my $fh, '<', $file)) {
        local $/;
        my $body = <$fh>;
        close $fh;
        print $c "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: "
            . length($body) . "\r\n\r\n$body";
        print "GET $path 200\n";
    } else {
        print $c "HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n";
        print "GET " . ($path // '?') . " 404\n";
    }
    close $c;
}
