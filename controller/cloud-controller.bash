# bash completion for cloud-controller: commands and long options (keep in
# step with usage() in controller/main.c). Installed as
# share/bash-completion/completions/cloud-controller.

_cloud_controller() {
    local cur prev cmd i
    cur=${COMP_WORDS[COMP_CWORD]}
    prev=${COMP_WORDS[COMP_CWORD - 1]}

    local commands="migrate issue-agent-cert join-token cert token version"
    local opts="--dev --listen --db --data-dir --db-pool --max-conns
        --max-conns-per-addr --anon-rate --anon-burst --join-rate --join-burst
        --db-wait --max-blob-mib --tls-cert --tls-key --insecure-http
        --cors-origin --agent-bin --sample-script --no-local-agent
        --no-sample-image --agent-listen --lease-seconds --load-page
        --no-reconcile --request-timeout --verbose --help --version"

    case $prev in
    --data-dir | --out)
        COMPREPLY=($(compgen -d -- "$cur"))
        return
        ;;
    --tls-cert | --tls-key | --agent-bin | --sample-script)
        COMPREPLY=($(compgen -f -- "$cur"))
        return
        ;;
    esac

    cmd=
    for ((i = 1; i < COMP_CWORD; i++)); do
        case ${COMP_WORDS[i]} in
        migrate | issue-agent-cert | join-token | cert | token | version)
            cmd=${COMP_WORDS[i]}
            break
            ;;
        esac
    done
    case $cmd in
    "")
        if [[ $cur == -* ]]; then
            COMPREPLY=($(compgen -W "$opts" -- "$cur"))
        else
            COMPREPLY=($(compgen -W "$commands" -- "$cur"))
        fi
        ;;
    migrate) COMPREPLY=($(compgen -W "--db --db-wait --help" -- "$cur")) ;;
    issue-agent-cert)
        COMPREPLY=($(compgen -W "--data-dir --name --out --help" -- "$cur"))
        ;;
    join-token)
        if ((COMP_CWORD == i + 1)); then
            COMPREPLY=($(compgen -W "create list" -- "$cur"))
        else
            COMPREPLY=($(compgen -W "--ttl --controller --data-dir --db" -- "$cur"))
        fi
        ;;
    cert)
        if ((COMP_CWORD == i + 1)); then
            COMPREPLY=($(compgen -W "revoke list" -- "$cur"))
        else
            COMPREPLY=($(compgen -W "--host --db" -- "$cur"))
        fi
        ;;
    token)
        if [[ $cur == -* ]]; then
            COMPREPLY=($(compgen -W "--db --name --role --ttl" -- "$cur"))
        else
            COMPREPLY=($(compgen -W "create list revoke" -- "$cur"))
        fi
        ;;
    esac
}
complete -F _cloud_controller cloud-controller
