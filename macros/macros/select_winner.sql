{#- One row per record: the highest valid score among the live candidate models' champions
    (challengers are shadow-scored and never win). NULL/NaN
    scores never win; ties go to the lower priority number, then to the model name, so the
    result never depends on row order. Records with no valid score get a NULL winner. -#}
{% macro select_winner(scores, key, summary_model, candidates) -%}
    {{ return(adapter.dispatch('select_winner', 'mlsm')(scores, key, summary_model, candidates)) }}
{%- endmacro %}

{% macro default__select_winner(scores, key, summary_model, candidates) -%}
{%- if candidates | length == 0 -%}
    {{ exceptions.raise_compiler_error("select_winner: summary model '" ~ summary_model ~ "' has no candidate models") }}
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

ranked as (

    select
        *,
        row_number() over (
            partition by {{ key }}
            order by score desc, priority asc, model_name asc
        ) as winner_rank

    from candidates

),

records as (

    select distinct {{ key }} from scores

),

final as (

    select
        records.{{ key }},
        '{{ summary_model }}' as summary_model,
        ranked.model_name as winning_model,
        ranked.model_version as winning_version,
        ranked.fit_id as winning_fit_id,
        ranked.score,
        cast(null as {{ dbt.type_string() }}) as arm

    from records
    left join ranked
        on ranked.{{ key }} = records.{{ key }}
        and ranked.winner_rank = 1

)

select * from final
{%- endmacro %}
