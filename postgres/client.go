package postgres

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5"
)

// TLSFiles are a certificate, its key and the authority that signed it and
// every peer's certificate.
type TLSFiles struct {
	CA, Cert, Key string
}

// Client is how a connection authenticates to a server.
//
// With TLS, every connection is encrypted and the server's certificate must
// be signed by TLS.CA and name the address the client means to reach
// (libpq's sslmode=verify-full); the client shows its own certificate,
// which is how it authenticates when it has no password (PostgreSQL's
// certificate authentication). Without TLS (a local topology made with
// `lifeline up --insecure`), connections are plain.
type Client struct {
	User     string
	Password string
	// PassFile holds the password for libpq programs (the walreceiver,
	// pg_basebackup, pg_rewind), so that it appears in no connection
	// string, command line or environment.
	PassFile string
	TLS      *TLSFiles
}

// ConnConfig is a pgx configuration for database dbname of the server at
// host:port, whose certificate must name serverName (host when empty: a
// connection through a WAN route dials the route but checks the server's
// own address).
func (c Client) ConnConfig(host string, port int, serverName, dbname string) (*pgx.ConnConfig, error) {
	cfg, err := pgx.ParseConfig(fmt.Sprintf("host=%s port=%d user=%s dbname=%s sslmode=disable connect_timeout=5",
		host, port, connQuote(c.User), connQuote(dbname)))
	if err != nil {
		return nil, err
	}
	cfg.Password = c.Password
	if c.TLS != nil {
		base, err := c.TLS.config()
		if err != nil {
			return nil, err
		}
		tc := base.Clone()
		tc.ServerName = host
		if serverName != "" {
			tc.ServerName = serverName
		}
		cfg.TLSConfig = tc
		cfg.Fallbacks = nil
	}
	return cfg, nil
}

// Conninfo is a libpq connection string for the same, without the password
// (libpq reads it from PassFile).
func (c Client) Conninfo(host string, port int, serverName, dbname string) string {
	parts := []string{"port=" + strconv.Itoa(port), "user=" + connQuote(c.User), "connect_timeout=5"}
	if serverName != "" && serverName != host {
		// libpq dials hostaddr and checks the certificate against host.
		parts = append(parts, "host="+serverName, "hostaddr="+host)
	} else {
		parts = append(parts, "host="+host)
	}
	if dbname != "" {
		parts = append(parts, "dbname="+connQuote(dbname))
	}
	if c.PassFile != "" {
		parts = append(parts, "passfile="+connQuote(c.PassFile))
	}
	if c.TLS == nil {
		return strings.Join(append(parts, "sslmode=disable"), " ")
	}
	parts = append(parts, "sslmode=verify-full", "sslrootcert="+connQuote(c.TLS.CA))
	if c.TLS.Cert != "" {
		parts = append(parts, "sslcert="+connQuote(c.TLS.Cert), "sslkey="+connQuote(c.TLS.Key))
	}
	return strings.Join(parts, " ")
}

// tlsConfigs caches the client configurations loaded from files: the
// agent connects to its server every check interval.
var tlsConfigs sync.Map // TLSFiles → *tls.Config

func (f *TLSFiles) config() (*tls.Config, error) {
	if c, ok := tlsConfigs.Load(*f); ok {
		return c.(*tls.Config), nil
	}
	ca, err := os.ReadFile(f.CA)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", f.CA, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return nil, fmt.Errorf("load %s: no certificate in it", f.CA)
	}
	c := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	if f.Cert != "" {
		pair, err := tls.LoadX509KeyPair(f.Cert, f.Key)
		if err != nil {
			return nil, fmt.Errorf("load %s: %w", f.Cert, err)
		}
		c.Certificates = []tls.Certificate{pair}
	}
	tlsConfigs.Store(*f, c)
	return c, nil
}

// passFileLine is one line of a libpq password file that gives user's
// password for every server (host:port:database:user:password, with ':'
// and '\' escaped).
func passFileLine(user, password string) string {
	esc := strings.NewReplacer(`\`, `\\`, `:`, `\:`)
	return fmt.Sprintf("*:*:*:%s:%s\n", esc.Replace(user), esc.Replace(password))
}
