{#- One row per record: the winner among the live candidate models' champions (challengers are
    shadow-scored and never win), by `rule`:
      highest_score       the highest score
      highest_percentile  the highest percentile (each score's on its own fit's bands)
      priority            the first candidate (by rank) with a valid score; "best_member"
                          arrives here with the candidates ranked by their holdout metric
      mean_score          the mean of the valid scores; the summary itself is the winner
    `candidates` is [[model, rank], ...]. NULL/NaN scores never win; ties go to the lower rank,
    then to the model name, so the result never depends on row order. Records with no valid
    score get a NULL winner. `mlsm_py.train.summary.pick` is the same rule in Python. -#}
{% macro select_winner(scores, key, summary_model, candidates, rule) -%}
    {{ return(adapter.dispatch('select_winner', 'mlsm')(scores, key, summary_model, candidates, rule)) }}
{%- endmacro %}

{% macro default__select_winner(scores, key, summary_model, candidates, rule) -%}
{%- if candidates | length == 0 -%}
    {{ exceptions.raise_compiler_error("select_winner: summary model '" ~ summary_model ~ "' has no candidate models") }}
{%- endif -%}
{%- set orders = {
    'highest_score': 'score desc, priority asc, model_name asc',
    'highest_percentile': 'percentile desc, priority asc, model_name asc',
    'priority': 'priority asc, model_name asc',
} -%}
{%- if rule not in orders and rule != 'mean_score' -%}
    {{ exceptions.raise_compiler_error("select_winner: summary model '" ~ summary_model ~ "' has unknown rule '" ~ rule ~ "'") }}
{%- endif -%}
with

scores as (

    select * from {{ scores }}

),

candidates as (

    select
        scores.*,
        case model_name
            {%- for name, priority in candidates %}
            when '{{ name }}' then {{ priority }}
            {%- endfor %}
        end as priority

    from scores
    where model_status = 'live'
        and role = 'champion'
        and model_name in ({% for name, _ in candidates %}'{{ name }}'{% if not loop.last %}, {% endif %}{% endfor %})
        and {{ mlsm.is_valid_score('score') }}

),

records as (

    select distinct {{ key }} from scores

),
{%- if rule == 'mean_score' %}

blended as (

    select {{ key }}, avg(score) as score
    from candidates
    group by {{ key }}

),

final as (

    select
        records.{{ key }},
        '{{ summary_model }}' as summary_model,
        case when blended.score is not null then '{{ summary_model }}' end as winning_model,
        cast(null as integer) as winning_version,
        cast(null as {{ dbt.type_string() }}) as winning_fit_id,
        blended.score,
        cast(null as {{ mlsm.type_double() }}) as percentile,
        cast(null as integer) as decile,
        cast(null as {{ dbt.type_string() }}) as arm

    from records
    left join blended
        on blended.{{ key }} = records.{{ key }}

)
{%- else %}

ranked as (

    select
        *,
        row_number() over (
            partition by {{ key }}
            order by {{ orders[rule] }}
        ) as winner_rank

    from candidates

),

final as (

    select
        records.{{ key }},
        '{{ summary_model }}' as summary_model,
        ranked.model_name as winning_model,
        ranked.model_version as winning_version,
        ranked.fit_id as winning_fit_id,
        ranked.score,
        ranked.percentile,
        ranked.decile,
        cast(null as {{ dbt.type_string() }}) as arm

    from records
    left join ranked
        on ranked.{{ key }} = records.{{ key }}
        and ranked.winner_rank = 1

)
{%- endif %}

select * from final
{%- endmacro %}
