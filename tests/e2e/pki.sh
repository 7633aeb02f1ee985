# A throwaway test PKI for the end-to-end tests (sourced): make_pki DIR NAME
# writes ca.{key,crt}, server.{key,crt} and client.{key,crt} (P-256, valid
# two days, CN NAME-ca, NAME-server, NAME-client) into DIR.
make_pki() (
    cd "$1" || exit 1
    ec() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1.key" 2>/dev/null; }
    ec ca
    openssl req -x509 -new -key ca.key -subj "/CN=$2-ca" -days 2 -out ca.crt 2>/dev/null || exit 1
    for n in server client; do
        ec $n
        openssl req -new -key $n.key -subj "/CN=$2-$n" -out $n.csr 2>/dev/null
        if [ $n = server ]; then eku=serverAuth; else eku=clientAuth; fi
        printf 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=%s\n' $eku >$n.ext
        openssl x509 -req -in $n.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 \
            -extfile $n.ext -out $n.crt 2>/dev/null || exit 1
    done
)
