# win-acme installation script for tlsfront on Windows.
#
# Let win-acme write PEM files where tlsfront reads them, and run this after
# every renewal:
#   wacs.exe --source manual --host mqtt.example.com `
#     --store pemfiles --pemfilespath C:\tlsfront\certs `
#     --installation script --script C:\tlsfront\tlsfront-reload.ps1
#
# tlsfront's file watch already sees the new files; this makes the reload
# happen now and turns a refused renewal into a failed installation step
# that win-acme logs and reports (its scheduled task "win-acme renew"
# shows the failure), instead of a line in tlsfront's log.
param(
    # tlsfront's --admin address.
    [string]$Admin = "127.0.0.1:9901",
    # The tlsfront binary.
    [string]$Tlsfront = "C:\tlsfront\tlsfront.exe"
)

# tlsfront reload prints the result for each certificate, with the reason
# for any it refused (it keeps serving the previous one), and exits 1 then.
& $Tlsfront reload --admin $Admin
if ($LASTEXITCODE -ne 0) {
    Write-Error "tlsfront did not accept the renewed certificate (it keeps serving the previous one)"
    exit 1
}
