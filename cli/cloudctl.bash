# bash completion for cloudctl: commands, subcommands, flags, and names of
# instances, services, hosts and images asked from the server (quietly: no
# completion is better than an error in the middle of a command line).
# Installed as share/bash-completion/completions/cloudctl.

_cloudctl_names() {
    # $1: what to list; the user's --server/--token flags are passed along.
    local -a conn=()
    local i
    for ((i = 1; i < ${#COMP_WORDS[@]} - 1; i++)); do
        case ${COMP_WORDS[i]} in
        --server | --token | --cacert) conn+=("${COMP_WORDS[i]}" "${COMP_WORDS[i + 1]}") ;;
        --insecure) conn+=(--insecure) ;;
        esac
    done
    case $1 in
    instances) cloudctl "${conn[@]}" ps -a -o name 2>/dev/null ;;
    services) cloudctl "${conn[@]}" services ls -o name 2>/dev/null ;;
    hosts) cloudctl "${conn[@]}" hosts ls -o name 2>/dev/null ;;
    images) cloudctl "${conn[@]}" images ls -o name 2>/dev/null ;;
    esac
}

_cloudctl() {
    local cur prev cmd sub i
    cur=${COMP_WORDS[COMP_CWORD]}
    prev=${COMP_WORDS[COMP_CWORD - 1]}

    local commands="run ps inspect logs kill stop start restart rm wait scale
        services hosts images events config endpoints version help"
    local global="--server --token --output -o --cacert --insecure --help"

    # The command is the first word that is neither a flag nor a flag value.
    cmd= sub=
    for ((i = 1; i < COMP_CWORD; i++)); do
        case ${COMP_WORDS[i]} in
        --server | --token | --cacert | -o | --output) ((i++)) ;;
        -*) ;;
        *)
            if [ -z "$cmd" ]; then
                cmd=${COMP_WORDS[i]}
            elif [ -z "$sub" ]; then
                sub=${COMP_WORDS[i]}
            fi
            ;;
        esac
    done

    case $prev in
    -o | --output)
        COMPREPLY=($(compgen -W "table wide json name" -- "$cur"))
        return
        ;;
    --server | --token | --name | --cpus | --memory | -m | --disk | --replicas | \
        --label | -l | --selector | --constraint | --env | -e | --timeout | --since | \
        --tail | -n | --max-per-host | --arg | --cmdline | --version | --if-version)
        return
        ;;
    --cacert | --kernel | --initrd)
        COMPREPLY=($(compgen -f -- "$cur"))
        return
        ;;
    --ready-when)
        COMPREPLY=($(compgen -W "running guest" -- "$cur"))
        return
        ;;
    -s | --signal)
        COMPREPLY=($(compgen -W "TERM KILL" -- "$cur"))
        return
        ;;
    --restart)
        COMPREPLY=($(compgen -W "never always on-failure on-failure:3" -- "$cur"))
        return
        ;;
    --service | --link | --unlink)
        COMPREPLY=($(compgen -W "$(_cloudctl_names services)" -- "$cur"))
        return
        ;;
    --host)
        COMPREPLY=($(compgen -W "$(_cloudctl_names hosts)" -- "$cur"))
        return
        ;;
    --image)
        COMPREPLY=($(compgen -W "$(_cloudctl_names images)" -- "$cur"))
        return
        ;;
    --state)
        COMPREPLY=($(compgen -W "pending scheduled starting running stopping
            exited failed lost active deleting ready cordoned draining drained down" -- "$cur"))
        return
        ;;
    --type)
        COMPREPLY=($(compgen -W "service.created service.updated service.deleted
            instance.created instance.killed instance.deleted instance.state
            host.cordoned host.uncordoned host.draining" -- "$cur"))
        return
        ;;
    --object)
        COMPREPLY=($(compgen -W "service instance host" -- "$cur"))
        return
        ;;
    esac

    if [ -z "$cmd" ]; then
        if [[ $cur == -* ]]; then
            COMPREPLY=($(compgen -W "$global" -- "$cur"))
        else
            COMPREPLY=($(compgen -W "$commands" -- "$cur"))
        fi
        return
    fi

    local flags= words=
    case $cmd in
    run)
        flags="--name --cpus --memory -m --disk --replicas --restart --label -l
            --constraint --spread --binpack --max-per-host --env -e --wait -w --timeout
            --link --ready-when --stop-grace"
        words=$(_cloudctl_names images)
        ;;
    ps) flags="--all -a --quiet -q --service --host --state --selector -l" ;;
    inspect | logs | kill | stop | start | restart | rm | wait)
        case $cmd in
        logs) flags="--follow -f --tail -n" ;;
        kill) flags="--signal -s --grace" ;;
        stop) flags="--grace" ;;
        wait) flags="--timeout" ;;
        esac
        words=$(_cloudctl_names instances)
        [ "$cmd" = kill ] && words="$words $(_cloudctl_names services)"
        ;;
    scale)
        flags="--wait -w --timeout"
        words=$(_cloudctl_names services | sed 's/$/=/')
        compopt -o nospace 2>/dev/null
        ;;
    services | service | svc)
        if [ -z "$sub" ]; then
            words="ls inspect update rm"
        else
            case $sub in
            update)
                flags="--image --replicas --cpus --memory -m --disk --arg --env -e
                    --restart --constraint --spread --binpack --max-per-host --wait -w --timeout
                    --label -l --no-labels --link --unlink --ready-when --stop-grace"
                ;;
            ls) flags="--state --selector -l" ;;
            esac
            [ "$sub" != ls ] && words=$(_cloudctl_names services)
        fi
        ;;
    hosts | host)
        if [ -z "$sub" ]; then
            words="ls inspect cordon uncordon drain"
        else
            [ "$sub" = ls ] && flags="--state" || words=$(_cloudctl_names hosts)
        fi
        ;;
    images | image)
        if [ -z "$sub" ]; then
            words="ls inspect push rm"
        else
            [ "$sub" = push ] && flags="--kernel --initrd --disk --cmdline"
            [ "$sub" = inspect ] || [ "$sub" = rm ] && words=$(_cloudctl_names images)
        fi
        ;;
    events) flags="--follow -f --since --type --object" ;;
    config)
        if [ -z "$sub" ]; then
            words="get set unset history rollback watch"
        else
            case $sub in
            get) flags="--version" ;;
            set | unset | rollback) flags="--if-version --wait --timeout" ;;
            esac
            words=$(_cloudctl_names services)
        fi
        ;;
    endpoints)
        flags="--watch -w"
        words=$(_cloudctl_names services)
        ;;
    version) flags="--client" ;;
    help) words=$commands ;;
    esac

    if [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "$flags $global" -- "$cur"))
    else
        COMPREPLY=($(compgen -W "$words" -- "$cur"))
    fi
}

complete -F _cloudctl cloudctl
